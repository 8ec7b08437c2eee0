"""A small simulated world for workflow tests: DNS weights, replicas, artifacts and health.

Each activity of activities/contracts.py is replaced by name with a method here that reads
and changes this world the way the real provider would (one effect per call, idempotent),
so a test states the situation (a dark region, a missing model, errors from 50% weight)
and asserts on where the world ends. The activities themselves are tested against the
sandbox in tests/activities/.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities import contracts as c
from activities.rehearsal import RehearsalActivities
from drpilot.domain.runbook import Runbook


@dataclass
class World:
    runbook: Runbook
    dns: dict[str, int] = field(default_factory=dict)
    replicas: dict[str, dict[str, int]] = field(default_factory=dict)
    dark: set[str] = field(default_factory=set)  # cluster and endpoints do not answer
    unhealthy: set[str] = field(default_factory=set)  # answers, but fails health checks
    missing: dict[str, set[str]] = field(default_factory=dict)  # region -> models missing
    degrade_at: dict[str, int] = field(default_factory=dict)  # region -> weight where errors start
    # region -> weight from which the analysis itself fails (e.g. Prometheus unreachable)
    analysis_fails_at: dict[str, int] = field(default_factory=dict)
    # region -> pods its nodes (and autoscaler) cannot hold of what a run would add
    short: dict[str, int] = field(default_factory=dict)
    # region -> what images.check / quota.check find wrong there (not ready)
    image_findings: dict[str, str] = field(default_factory=dict)
    quota_short: dict[str, str] = field(default_factory=dict)
    # Seconds from a scale request to its pods' stages (scheduled, pulled, started, ready) and,
    # after the warm-up began, to the versions ready and its end: what kube.scale / the warm-up
    # report as each scale-up's cold start. None: no cold start reported (as before 0.4.0).
    cold_start: tuple[float, ...] | None = None
    velero_phase: str = "Completed"
    velero_backup_age: timedelta = timedelta(minutes=5)  # how long ago the backup to restore completed
    last_drill_age: timedelta | None = None  # how long ago the runbook's last drill completed; None: never
    measured_cold_start: c.MeasuredColdStart | None = None  # what the newest measuring drill measured
    # Regions whose pods started while a model's artifacts were missing: they serve without
    # it (the version gate fails) until a rollout restart with the artifacts complete.
    stale: set[str] = field(default_factory=set)
    restarts: list[tuple[str, str]] = field(default_factory=list)  # (region, restartedAt key)
    notified: list[c.RunEvent] = field(default_factory=list)  # notifications delivered
    # The Velero restore answers only once this is set, to order it against the rest of the
    # run on any machine: `entered` (the hold is entered) or `dns_moved` (a DNS change applied).
    velero_after: asyncio.Event | None = None
    dns_moved: asyncio.Event = field(default_factory=asyncio.Event)
    # (activity name, nth call) to hold in, heartbeating, until released: abort tests.
    hold: tuple[str, int] | None = None
    entered: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    calls: list[tuple[str, str]] = field(default_factory=list)  # (activity, detail)
    cancelled: list[str] = field(default_factory=list)  # held activities a cancel reached
    changes: list[dict[str, int]] = field(default_factory=list)  # DNS change batches applied
    restores: dict[str, str] = field(default_factory=dict)  # velero restore name -> region
    scale_calls: list[tuple[str, str]] = field(default_factory=list)  # (region, to)
    scaled_at: dict[str, float] = field(default_factory=dict)  # region -> its last scale-up (cold_start)
    # Health of a region at each DNS weight it was served at: checks "never traffic to a
    # region that failed its gate".
    health_log: list[tuple[str, bool]] = field(default_factory=list)
    # (activity name, region) -> the scaled waits it reports, as a rehearsal's would.
    waits: dict[tuple[str, str], list[c.ScaledWait]] = field(default_factory=dict)

    @classmethod
    def normal(cls, runbook: Runbook, *, hold: tuple[str, int] | None = None) -> World:
        """Every region as in normal operation: serving regions active, standbys standby."""
        world = cls(runbook=runbook, dns=runbook.normal_weights(), hold=hold)
        for region, spec in runbook.regions.items():
            count = "standby" if spec.role.value == "standby" else "active"
            world.replicas[region] = {
                f"{w.namespace}/{w.deployment}": getattr(w.replicas, count) for w in runbook.workloads_in(region)
            }
        return world

    # ------------------------------------------------------------------ the world's truth
    def healthy(self, region: str) -> bool:
        if region in self.dark or region in self.unhealthy or self.missing.get(region) or region in self.stale:
            return False
        want = {f"{w.namespace}/{w.deployment}": w.replicas.active for w in self.runbook.workloads_in(region)}
        return all(self.replicas.get(region, {}).get(k, 0) >= n for k, n in want.items())

    def serving(self) -> list[str]:
        return sorted(r for r, w in self.dns.items() if w > 0)

    def activities(self) -> list[Callable]:
        return [
            self.dns_read, self.dns_apply, self.kube_read, self.kube_scale, self.kube_rollout_restart, self.kube_capacity,
            self.images_check, self.quota_check,
            self.artifacts_verify, self.artifacts_restore, self.artifacts_sync, self.velero_restore,
            self.velero_backup, self.warmup, self.health_gate, self.analyse, self.notify,
            RehearsalActivities().wait,  # a rehearsal's short waits, really slept (no provider)
        ]

    async def _visit(self, name: str, detail: str = "") -> None:
        self.calls.append((name, detail))
        nth = sum(1 for called, _ in self.calls if called == name)
        if self.hold == (name, nth):
            self.entered.set()
            try:
                while not self.release.is_set():
                    activity.heartbeat()
                    await asyncio.sleep(0.02)
            except asyncio.CancelledError:
                self.cancelled.append(name)
                raise

    async def _waited(self, name: str, region: str) -> list[c.ScaledWait]:
        """The scaled waits the activity reports, taken for real as a rehearsal takes them."""
        waits = self.waits.get((name, region), [])
        await asyncio.sleep(sum(w.seconds for w in waits))
        return waits

    def _reach(self, region: str) -> None:
        if region in self.dark:
            raise ApplicationError(f"{region}: cluster API unreachable (connection refused)")

    # ------------------------------------------------------------------ DNS
    @activity.defn(name=c.DNS_READ)
    async def dns_read(self, input: c.DnsReadInput) -> c.DnsState:
        await self._visit(c.DNS_READ)
        return c.DnsState(records=[c.RecordWeights(name=r.name, weights=dict(self.dns)) for r in self.runbook.spec.dns.records])

    @activity.defn(name=c.DNS_APPLY)
    async def dns_apply(self, input: c.DnsApplyInput) -> c.DnsApplyResult:
        await self._visit(c.DNS_APPLY, str(input.weights))
        serving = sum(1 for w in input.weights.values() if w > 0)
        # dns.apply's two refusals, with the types the real activity raises (tests/parity checks).
        if sum(input.weights.values()) != 100:
            raise ApplicationError(f"refusing weights {input.weights}: they must sum to 100",
                                   type=c.ErrorType.DNS_WEIGHTS_INVALID, non_retryable=True)
        if serving < self.runbook.spec.guardrails.min_healthy_targets:
            raise ApplicationError(f"refusing weights {input.weights}: too few healthy targets",
                                   type=c.ErrorType.DNS_GUARDRAIL, non_retryable=True)
        if input.weights == self.dns:
            return c.DnsApplyResult(change_id=None, status="unchanged", weights=dict(self.dns))
        self.dns = dict(input.weights)
        self.changes.append(dict(input.weights))
        self.dns_moved.set()
        for region, weight in input.weights.items():
            if weight > 0:
                self.health_log.append((region, self.healthy(region)))
        return c.DnsApplyResult(change_id=f"C{len(self.changes)}", status="INSYNC", weights=dict(self.dns))

    # ------------------------------------------------------------------ Kubernetes
    def _state(self, region: str) -> c.ReplicaState:
        return c.ReplicaState(
            region=region,
            deployments=[
                c.DeploymentState(namespace=k.split("/")[0], name=k.split("/")[1], replicas=n, ready=n)
                for k, n in sorted(self.replicas.get(region, {}).items())
            ],
        )

    def _exist(self, region: str) -> None:
        for w in self.runbook.workloads_in(region):
            if f"{w.namespace}/{w.deployment}" not in self.replicas.get(region, {}):
                raise ApplicationError(
                    f"Deployment {w.namespace}/{w.deployment} not found in region {region}",
                    type="KubeNotFound",
                    non_retryable=True,
                )

    @activity.defn(name=c.KUBE_READ)
    async def kube_read(self, input: c.KubeReadInput) -> c.ReplicaState:
        await self._visit(c.KUBE_READ, input.region)
        self._reach(input.region)
        if input.workloads:  # a scale block's Deployments
            return self._named(input.region, input.workloads)
        self._exist(input.region)
        return self._state(input.region)

    def _named(self, region: str, keys: list[str]) -> c.ReplicaState:
        have = self.replicas.get(region, {})
        for key in keys:
            if key not in have:
                raise ApplicationError(f"Deployment {key} not found in region {region}", type="KubeNotFound", non_retryable=True)
        return c.ReplicaState(region=region, deployments=[
            c.DeploymentState(namespace=k.split("/")[0], name=k.split("/")[1], replicas=have[k], ready=have[k]) for k in keys
        ])

    @activity.defn(name=c.KUBE_SCALE)
    async def kube_scale(self, input: c.ScaleInput) -> c.ScaleResult:
        await self._visit(c.KUBE_SCALE, f"{input.region} {input.to}")
        self._reach(input.region)
        if input.to == "exact":  # a scale block's Deployments, to exact counts
            self._named(input.region, list(input.counts))
            self.scale_calls.append((input.region, "exact"))
            self.replicas[input.region].update(input.counts)
            return c.ScaleResult(
                region=input.region, deployments=self._named(input.region, list(input.counts)).deployments,
                changed=list(input.counts),
            )
        self._exist(input.region)
        self.scale_calls.append((input.region, input.to))
        changed = []
        for w in self.runbook.workloads_in(input.region):
            key = f"{w.namespace}/{w.deployment}"
            want = getattr(w.replicas, input.to)
            if self.replicas.setdefault(input.region, {}).get(key, 0) < want and self.missing.get(input.region):
                self.stale.add(input.region)  # new pods load what is there now
            if self.replicas.setdefault(input.region, {}).get(key) != want:
                changed.append(key)
            self.replicas[input.region][key] = want
        return c.ScaleResult(
            region=input.region, deployments=self._state(input.region).deployments, changed=changed,
            waits=await self._waited(c.KUBE_SCALE, input.region), cold_start=self._cold_start(input.region, changed),
        )

    def _cold_start(self, region: str, changed: list[str]) -> list[c.ColdStart]:
        if self.cold_start is None or not changed:
            return []
        at = activity.info().current_attempt_scheduled_time.timestamp()  # the server's clock
        self.scaled_at[region] = at
        scheduled, pulled, started, ready = self.cold_start[:4]
        return [c.ColdStart(workload=w, pods=1, region=region, requested_at=at, scheduled=scheduled, pulled=pulled,
                            started=started, ready=ready) for w in changed]

    @activity.defn(name=c.KUBE_CAPACITY)
    async def kube_capacity(self, input: c.CapacityInput) -> c.CapacityResult:
        await self._visit(c.KUBE_CAPACITY, input.region)
        self._reach(input.region)
        self._exist(input.region)
        adding = sum(
            max(0, getattr(w.replicas, input.to) - self.replicas.get(input.region, {}).get(f"{w.namespace}/{w.deployment}", 0))
            for w in self.runbook.workloads_in(input.region)
        )
        short = min(adding, self.short.get(input.region, 0))
        said = f"{input.region} needs {adding} pods of 1 nvidia.com/gpu: {adding - short} fit now"
        if short:
            return c.CapacityResult(region=input.region, verdict="short", detail=f"{said}: short by {short} pods ({short} nvidia.com/gpu)")
        return c.CapacityResult(region=input.region, verdict="fits", detail=f"{said}: fits")

    @activity.defn(name=c.IMAGES_CHECK)
    async def images_check(self, input: c.ImagesInput) -> c.ImagesResult:
        await self._visit(c.IMAGES_CHECK, input.region)
        self._reach(input.region)
        if input.region in self.image_findings:
            return c.ImagesResult(region=input.region, verdict="finding", detail=self.image_findings[input.region])
        return c.ImagesResult(region=input.region, verdict="ok", detail="every image in the region's registry")

    @activity.defn(name=c.QUOTA_CHECK)
    async def quota_check(self, input: c.QuotaInput) -> c.QuotaResult:
        await self._visit(c.QUOTA_CHECK, input.region)
        if input.region in self.quota_short:
            return c.QuotaResult(region=input.region, verdict="short", detail=self.quota_short[input.region])
        return c.QuotaResult(region=input.region, verdict="ok", detail="the scale-out starts no new node")

    @activity.defn(name=c.KUBE_ROLLOUT_RESTART)
    async def kube_rollout_restart(self, input: c.RolloutRestartInput) -> c.RolloutRestartResult:
        await self._visit(c.KUBE_ROLLOUT_RESTART, input.region)
        self._reach(input.region)
        done = (input.region, input.restarted_at) in self.restarts
        if not done:
            self.restarts.append((input.region, input.restarted_at))
            if not self.missing.get(input.region):
                self.stale.discard(input.region)
        restarted = [] if done else sorted(self.replicas.get(input.region, {}))
        return c.RolloutRestartResult(region=input.region, deployments=self._state(input.region).deployments, restarted=restarted)

    # ------------------------------------------------------------------ artifacts
    def _verify(self, region: str, model: str, version: str) -> c.VerifyResult:
        problems = []
        if model in self.missing.get(region, set()):
            problems = [c.ArtifactProblem(key=f"s3://models-{region}/{model}/{version}/weights.bin", problem="missing")]
        return c.VerifyResult(region=region, model=model, version=version, files=3, bytes=3000, problems=problems)

    @activity.defn(name=c.ARTIFACTS_VERIFY)
    async def artifacts_verify(self, input: c.ArtifactInput) -> c.VerifyResult:
        await self._visit(c.ARTIFACTS_VERIFY, f"{input.region} {input.model}")
        return self._verify(input.region, input.model, input.version)

    @activity.defn(name=c.ARTIFACTS_RESTORE)
    async def artifacts_restore(self, input: c.RestoreInput) -> c.RestoreResult:
        await self._visit(c.ARTIFACTS_RESTORE, f"{input.region} {input.model}")
        await asyncio.sleep(0.2)  # a Glacier restore outlasts the scale-up it runs beside
        self.missing.get(input.region, set()).discard(input.model)
        return c.RestoreResult(
            region=input.region, model=input.model, tier="Expedited",
            restored=[f"{input.model}/weights.bin"], verify=self._verify(input.region, input.model, input.version),
        )

    @activity.defn(name=c.ARTIFACTS_SYNC)
    async def artifacts_sync(self, input: c.SyncInput) -> c.SyncResult:
        await self._visit(c.ARTIFACTS_SYNC, f"{input.source_region}->{input.target_region} {input.model}")
        copied = ["weights.bin"] if input.model in self.missing.get(input.target_region, set()) else []
        self.missing.get(input.target_region, set()).discard(input.model)
        return c.SyncResult(copied=copied, unchanged=3 - len(copied), verify=self._verify(input.target_region, input.model, input.version))

    # ------------------------------------------------------------------ Velero
    @activity.defn(name=c.VELERO_RESTORE)
    async def velero_restore(self, input: c.VeleroRestoreInput) -> c.VeleroRestoreResult:
        await self._visit(c.VELERO_RESTORE, input.restore_name)
        if self.velero_after is not None:
            await self.velero_after.wait()
        self._reach(input.region)
        created = input.restore_name not in self.restores
        self.restores[input.restore_name] = input.region
        if self.velero_phase == "Completed":
            # The backup brings the workloads back as they were backed up: at standby.
            for w in self.runbook.workloads_in(input.region):
                self.replicas.setdefault(input.region, {}).setdefault(f"{w.namespace}/{w.deployment}", w.replicas.standby)
        errors = 0 if self.velero_phase == "Completed" else 2
        return c.VeleroRestoreResult(name=input.restore_name, phase=self.velero_phase, errors=errors, created=created)

    @activity.defn(name=c.VELERO_BACKUP)
    async def velero_backup(self, input: c.VeleroBackupInput) -> c.VeleroBackupInfo:
        await self._visit(c.VELERO_BACKUP, input.region)
        velero = self.runbook.spec.backups.velero
        assert velero is not None
        # The server's clock (the test server skips time ahead), not this machine's.
        completed = activity.info().current_attempt_scheduled_time - self.velero_backup_age
        return c.VeleroBackupInfo(name=velero.backup, phase="Completed", completed_at=completed)

    # Not in activities(): drill tests run the real drill activities (tests/support/drills.py).
    @activity.defn(name=c.DRILL_LAST)
    async def last_drill(self, input: c.LastDrillInput) -> c.LastDrill:
        await self._visit(c.DRILL_LAST)
        if self.last_drill_age is None:
            return c.LastDrill(cold_start=self.measured_cold_start)
        ended = activity.info().current_attempt_scheduled_time - self.last_drill_age  # the server's clock
        return c.LastDrill(completed_at=ended, drill_id="drill:llm-inference-20261001T100000Z",
                           uri="s3://dr-evidence/drills/x.json", cold_start=self.measured_cold_start)

    # ------------------------------------------------------------------ notifications
    @activity.defn(name=c.NOTIFY_SEND)
    async def notify(self, input: c.NotifyInput) -> c.NotifyResult:
        await self._visit(c.NOTIFY_SEND, input.event.event)
        if input.notifier.url_env == "BROKEN_HOOK":  # a receiver that refuses everything
            raise ApplicationError("notification refused (403 forbidden)", type="NotifyRefused", non_retryable=True)
        self.notified.append(input.event)
        return c.NotifyResult(delivered=True, status=200, target="http://127.0.0.1")

    # ------------------------------------------------------------------ probes
    @activity.defn(name=c.PROBES_WARMUP)
    async def warmup(self, input: c.WarmupInput) -> c.WarmupResult:
        await self._visit(c.PROBES_WARMUP, input.region)
        n = sum(w.requests for w in self.runbook.spec.warmup)
        failures = 0 if self.healthy(input.region) else n
        if self.cold_start is None or input.region not in self.scaled_at:
            return c.WarmupResult(region=input.region, requests=n, failures=failures, p50_ms=40, p99_ms=120)
        # Stages 5 and 6 count from the scale request, on the server's clock.
        scaled, (versions, warmed) = self.scaled_at[input.region], self.cold_start[4:]
        return c.WarmupResult(region=input.region, requests=n, failures=failures, p50_ms=40, p99_ms=120,
                              versions_ready_at=scaled + versions, ended_at=scaled + warmed)

    @activity.defn(name=c.PROBES_HEALTH)
    async def health_gate(self, input: c.HealthInput) -> c.HealthResult:
        await self._visit(c.PROBES_HEALTH, input.region)
        ok = self.healthy(input.region)
        evidence = [
            c.CheckEvidence(check=f"GET {h.path}", passed=ok, observed=str(h.expect) if ok else "503")
            for h in self.runbook.spec.health.http
        ]
        if input.region in self.stale:
            evidence += [
                c.CheckEvidence(check=f"GET /v2/models/{m.name}/versions/{m.version}/ready", passed=False, observed="404")
                for m in self.runbook.spec.models
            ]
        consecutive = self.runbook.spec.health.consecutive
        return c.HealthResult(
            region=input.region, passed=ok, rounds=consecutive if ok else 12,
            consecutive=consecutive if ok else 0, seconds=10.0, evidence=evidence,
            waits=await self._waited(c.PROBES_HEALTH, input.region),
        )

    @activity.defn(name=c.PROBES_ANALYSE)
    async def analyse(self, input: c.AnalyseInput) -> c.AnalyseResult:
        await self._visit(c.PROBES_ANALYSE, f"{input.region} at {self.dns.get(input.region, 0)}")
        broken_from = self.analysis_fails_at.get(input.region)
        if broken_from is not None and self.dns.get(input.region, 0) >= broken_from:
            raise ApplicationError("prometheus: query failed: 403 Forbidden", type="PrometheusError", non_retryable=True)
        threshold = self.degrade_at.get(input.region)
        degraded = threshold is not None and self.dns.get(input.region, 0) >= threshold
        rate = 0.2 if degraded else 0.001
        limit = self.runbook.spec.traffic_shift.rollback.max_error_rate
        return c.AnalyseResult(
            region=input.region, healthy=rate <= limit, requests=500, error_rate=rate, p99_ms=180.0,
            evidence=[c.CheckEvidence(check="error rate", passed=rate <= limit, observed=f"{rate:.3f}")],
        )


def outage(rb: Runbook, region: str) -> World:
    """A normal world whose `region` went dark."""
    world = World.normal(rb)
    world.dark.add(region)
    return world


def after_failover(rb: Runbook, original: str, dr: dict[str, int], *, hold: tuple[str, int] | None = None) -> World:
    """The world a failover left: DNS on the DR region(s), DR scaled up, original recovered
    but scaled to standby and missing a model that changed while it was away."""
    world = World.normal(rb, hold=hold)
    world.dns = {r: dr.get(r, 0) for r in rb.regions}
    for region in dr:
        for w in rb.workloads_in(region):
            world.replicas[region][f"{w.namespace}/{w.deployment}"] = w.replicas.active
    for w in rb.workloads_in(original):
        world.replicas[original][f"{w.namespace}/{w.deployment}"] = w.replicas.standby
    world.missing[original] = {rb.spec.models[0].name}
    return world

"""`drpilot runbook plan`: what a failover or failback would change, from live state.

It reads exactly what the procedures read first (DNS weights, replica counts, capacity,
artifact checks) through the same activity classes, outside Temporal, and computes the changes with
the same planning functions the workflows use (`workflows.plan`). It changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from temporalio.exceptions import ApplicationError

from activities.artifacts.activities import ArtifactActivities
from activities.blocks.aurora import AuroraActivities
from activities.contracts import (
    ArtifactInput,
    AuroraReadInput,
    CapacityInput,
    DnsReadInput,
    ImagesInput,
    KubeReadInput,
    LastDrillInput,
    QuotaInput,
    RestoreInput,
)
from activities.dns.activities import DnsActivities
from activities.drills import DrillActivities
from activities.kube.activities import KubeActivities
from activities.probes.analysis import PROBE_REQUESTS_MIN
from activities.standby import StandbyActivities
from drpilot.domain.blocks import FAILBACK_STAGES, FAILOVER_STAGES, Block
from drpilot.domain.durations import format_duration
from drpilot.domain.runbook import Action, DnsSwitch, Model, Role, Runbook, Warmup
from drpilot.domain.settings import Settings
from workflows.cold_start import cold_start_verdicts
from workflows.plan import (
    approval_required,
    failback_home,
    failover_targets,
    failover_weights,
    format_weights,
    shift_weights,
)


@dataclass
class Plan:
    action: str
    changes: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


# Where each DNS provider's control plane (the API that changes records) is served from.
# Route53's data plane (answering queries) is global, but record changes go through an API
# served from us-east-1 only; Cloud DNS's API is global, with no region of its own.
DNS_CONTROL_PLANE_REGION = {"route53": "us-east-1"}


def dns_control_plane_warning(rb: Runbook, failed: str) -> str | None:
    """A warning when the failed region hosts the control plane the failover's DNS change
    needs: in that region's outage the one change a failover makes may be impossible."""
    provider = str(rb.spec.dns.provider)
    home = DNS_CONTROL_PLANE_REGION.get(provider)
    if home is None or failed != home or rb.spec.dns.switch is DnsSwitch.routing_controls:
        return None  # routing controls switch through ARC's data plane, not the control plane
    return (
        f"this failover leaves {failed}, where the {provider} control plane is served from: in an "
        f"outage of {failed} the DNS change may be the step that cannot be made. Rehearse it, or switch "
        "by Route 53 ARC routing controls (spec.dns.switch: routing_controls); see README, "
        "\"Route 53's control plane\""
    )


def routing_control_calls(rb: Runbook, before: dict[str, int], after: dict[str, int]) -> list[str]:
    """The failover's DNS step for a runbook switched by routing controls: the calls the
    emergency path makes, none of them to Route 53's control plane."""
    arc = rb.spec.dns.routing_controls
    assert arc is not None
    states = " ".join(f"{r}={'On' if after.get(r, 0) > 0 else 'Off'}" for r in rb.regions)
    endpoints = ", ".join(e.region for e in arc.cluster_endpoints)
    ttl = max(r.ttl for r in rb.spec.dns.records)
    return [
        f"DNS answers {format_weights(before)} -> {format_weights(after)} by routing controls {states}: "
        f"route53-recovery-cluster GetRoutingControlState x{len(arc.controls)}, then ONE "
        f"UpdateRoutingControlStates, each trying the cluster endpoints in turn ({endpoints}); "
        f"route53 ListResourceRecordSets to read the weights; no ChangeResourceRecordSets; then wait TTL {ttl}s",
    ]


@dataclass
class LiveState:
    """Where a plan reads the live state: the activity classes the procedures read it with."""

    dns: DnsActivities
    kube: KubeActivities
    artifacts: ArtifactActivities
    standby: StandbyActivities
    drills: DrillActivities
    aurora: AuroraActivities | None = None  # aurora_global blocks' writer and lag now

    @classmethod
    def from_settings(cls, settings: Settings) -> LiveState:
        return cls(
            DnsActivities.from_settings(settings),
            KubeActivities.from_settings(settings),
            ArtifactActivities.from_settings(settings),
            StandbyActivities.from_settings(settings),
            DrillActivities.from_settings(settings),
            AuroraActivities.from_settings(settings),
        )

    def cold_starts(self, rb: Runbook) -> list[tuple[str, bool, str]] | str:
        """The newest drill's measured cold start judged against the RTO (as readiness judges
        it), per region; or why the drills' evidence could not be read."""
        if rb.spec.drills is None:
            return []
        try:
            last = self.drills.last_completed(LastDrillInput(runbook=rb))
        except ApplicationError as exc:
            return exc.message
        return cold_start_verdicts(rb, last.cold_start) if last.cold_start else []

    def weights(self, rb: Runbook) -> dict[str, int]:
        return self.dns.read(DnsReadInput(runbook=rb)).weights()

    def replicas(self, rb: Runbook, region: str) -> dict[str, int] | str:
        """Replicas per namespace/deployment, or why the cluster could not be read."""
        try:
            state = self.kube.read(KubeReadInput(runbook=rb, region=region))
        except ApplicationError as exc:
            return exc.message
        return {f"{d.namespace}/{d.name}": d.replicas for d in state.deployments}


def _scale_changes(plan: Plan, rb: Runbook, region: str, live: LiveState, to: str) -> None:
    current = live.replicas(rb, region)
    if isinstance(current, str):
        plan.notes.append(f"{region}: cluster not readable now ({current})")
        current = {}
    for w in rb.workloads_in(region):
        key = f"{w.namespace}/{w.deployment}"
        want = w.replicas.active if to == "active" else w.replicas.standby
        have = current.get(key)
        if have != want:
            plan.changes.append(f"scale {region} {key}: {have if have is not None else '?'} -> {want} replicas ({to})")


def _archive_fix(model: Model) -> str:
    store = "Cloud Storage" if (model.archive or "").startswith("gs://") else "Glacier"
    return f"restore from the {store} archive"


def _capacity(plan: Plan, rb: Runbook, region: str, live: LiveState, consequence: str) -> None:
    """Whether the region holds the active counts (the check failover preflight makes), and
    its images and GPU quota (readiness's checks)."""
    try:
        result = live.kube.capacity(CapacityInput(runbook=rb, region=region))
    except ApplicationError as exc:
        plan.notes.append(f"{region}: capacity not checked ({exc.message})")
        return
    if result.ready:
        plan.notes.append(f"{region}: capacity: {result.detail}")
    else:
        plan.warnings.append(f"{region}: capacity: {result.detail}; {consequence}")
    for what, read in (
        ("images", lambda: live.standby.images(ImagesInput(runbook=rb, region=region))),
        ("quota", lambda: live.standby.quota(QuotaInput(runbook=rb, region=region, capacity=result))),
    ):
        try:
            found = read()
        except ApplicationError as exc:
            plan.notes.append(f"{region}: {what} not checked ({exc.message})")
            continue
        (plan.notes if found.ready else plan.warnings).append(f"{region}: {what}: {found.detail}")


def _artifact_changes(plan: Plan, rb: Runbook, region: str, artifacts: ArtifactActivities, fix: str | None) -> None:
    """`fix` None: restore from the model's archive."""
    for model in rb.spec.models:
        try:
            result = artifacts.verify(ArtifactInput(runbook=rb, region=region, model=model.name, version=model.version))
        except ApplicationError as exc:
            plan.notes.append(f"{region}: cannot verify {model.name} now ({exc.message})")
            continue
        if result.problems:
            keys = ", ".join(p.key.rsplit("/", 1)[-1] for p in result.problems[:5])
            plan.changes.append(
                f"{fix or _archive_fix(model)} {model.name} {model.version} in {region}: {len(result.problems)} file(s) ({keys})"
            )


def _restore_timing(plan: Plan, rb: Runbook, region: str, artifacts: ArtifactActivities) -> None:
    """Which archived files an emergency restore would request, in which Glacier tier, and
    how long Glacier takes for each (the full RTO as budget: nothing has run yet); or, from
    a Cloud Storage archive, which files it reads from a class whose retrieval is billed."""
    budget = rb.spec.objectives.rto.total_seconds()
    for model in rb.spec.models:
        if model.archive is None:
            continue
        try:
            files = artifacts.restore_plan(
                RestoreInput(runbook=rb, region=region, model=model.name, version=model.version, budget_seconds=budget)
            )
        except ApplicationError as exc:
            plan.notes.append(f"{region}: cannot plan the restore of {model.name} now ({exc.message})")
            continue
        for f in files:
            if f.tier is None:
                plan.notes.append(
                    f"{region}: {model.name} {f.path} ({f.size} bytes) from Cloud Storage {f.storage_class}: "
                    "read at once (no restore wait), retrieval billed per GB"
                )
                continue
            fastest, worst = (format_duration(timedelta(seconds=s)) for s in f.seconds)
            plan.notes.append(
                f"{region}: {model.name} {f.path} ({f.size} bytes) from Glacier {f.tier}: {fastest} to {worst}"
            )


def _warmup_text(warm: Warmup) -> str:
    """e.g. "POST /v2/models/llm/infer x10" or "... until the p95 time to first byte of the latest 20 <= 800ms (at most 10m)"."""
    request = f"{warm.method} {warm.path}"
    ready = warm.ready_when
    if ready is None:
        return f"{request} x{warm.requests}"
    return (f"{request} until the p95 time to first byte of the latest {ready.window} <= "
            f"{format_duration(ready.p95_time_to_first_byte)} (at most {format_duration(ready.timeout)})")


def plan_failover(
    rb: Runbook, failed: str, to: list[str] | None, settings: Settings, *, live: LiveState | None = None
) -> Plan:
    """What a failover would do now. `live`: clients to read with, shared by many plans (an
    evacuation); else made from `settings`."""
    plan, live = Plan("failover"), live or LiveState.from_settings(settings)
    before = live.weights(rb)
    targets = failover_targets(rb, failed, to)
    warning = dns_control_plane_warning(rb, failed)
    if warning:
        plan.warnings.append(warning)
    after = failover_weights(rb, failed, targets, before)
    stops = (
        "a graceful failover stops in preflight, changing nothing (guardrails.capacity: fail); an ungraceful one goes on"
        if rb.spec.guardrails.capacity == "fail"
        else "the failover goes on with what fits (guardrails.capacity: warn)"
    )
    colds = live.cold_starts(rb)
    if isinstance(colds, str):
        plan.notes.append(f"cold start not known ({colds})")
        colds = []
    for region in targets:
        _scale_changes(plan, rb, region, live, "active")
        _capacity(plan, rb, region, live, stops)
        for where, ok, text in colds:
            if where == region:
                (plan.notes if ok else plan.warnings).append(f"{region}: cold start: {text}")
        _artifact_changes(plan, rb, region, live.artifacts, None)
        _restore_timing(plan, rb, region, live.artifacts)
    velero = rb.spec.backups.velero
    if velero and Action.failover in velero.restore_on:
        plan.changes.append(f"velero restore from backup {velero.backup} in {', '.join(targets)}")
    if rb.spec.warmup:
        plan.changes.append(f"warm up {', '.join(targets)}: " + "; ".join(_warmup_text(w) for w in rb.spec.warmup))
    plan.changes.append(f"health gate {', '.join(targets)} (timeout {format_duration(rb.spec.health.timeout)})")
    if approval_required(rb.spec.approvals.failover, "cli"):
        plan.changes.append(f"wait for `drpilot approve` (timeout {format_duration(rb.spec.approvals.timeout)}, then {rb.spec.approvals.on_timeout})")
    if after != before and rb.spec.dns.switch is DnsSwitch.routing_controls:
        plan.changes += routing_control_calls(rb, before, after)
    elif after != before:
        ttl = max(r.ttl for r in rb.spec.dns.records)
        plan.changes.append(f"DNS {format_weights(before)} -> {format_weights(after)} in one change, then wait TTL {ttl}s")
    else:
        plan.notes.append(f"DNS already at {format_weights(after)}")
    _blocks(plan, rb, failed, targets[0], live)
    return plan


def _blocks(plan: Plan, rb: Runbook, source: str, target: str, live: LiveState) -> None:
    """The runbook's blocks of this action, stage by stage, each with what it would do (an
    aurora_global block: with its writer and lag now)."""
    stages = FAILOVER_STAGES if plan.action == "failover" else FAILBACK_STAGES
    for stage in stages:
        for block in (b for b in rb.spec.blocks if b.stage(plan.action) == stage):
            now = _writer_now(plan, block, source, target, live) if block.kind == "aurora_global" else ""
            plan.changes.append(f"block {block.name} ({block.kind}, at {stage}): {block.describe(source, target)}{now}")


def _writer_now(plan: Plan, block: Block, source: str, target: str, live: LiveState) -> str:
    if live.aurora is None or block.global_cluster is None or block.members is None:
        return ""
    members = {r: block.members[r] for r in (source, target) if r in block.members}
    try:
        state = live.aurora.aurora_read(AuroraReadInput(
            block=block.name, global_cluster=block.global_cluster, members=members, target=target,
        ))
    except ApplicationError as exc:
        return f"; now: not read ({exc.message})"
    limit = block.lag_limit.total_seconds()
    if state.lag_seconds is not None and state.lag_seconds > limit and state.writer_region != target:
        plan.warnings.append(
            f"block {block.name}: {target}'s replication lag is {state.lag_seconds:g}s, above max_lag {limit:g}s: "
            "a graceful run stops in preflight, changing nothing"
        )
    lag = "unknown" if state.lag_seconds is None else f"{state.lag_seconds:g}s"
    problems = f"; {'; '.join(state.problems)}" if state.problems else ""
    return f"; now: writer {state.writer_region or state.writer_arn or 'none'}, {target}'s lag {lag}{problems}"


def plan_failback(rb: Runbook, original: str, settings: Settings) -> Plan:
    plan, live = Plan("failback"), LiveState.from_settings(settings)
    start = live.weights(rb)
    home = failback_home(rb, original, start)
    _scale_changes(plan, rb, original, live, "active")
    _capacity(plan, rb, original, live, "the failback's scale-up would leave pods Pending")
    _artifact_changes(plan, rb, original, live.artifacts, "sync from the serving region")
    dr = [r for r in rb.regions if r != original]
    _blocks(plan, rb, max(dr, key=lambda r: (start.get(r, 0), r)), original, live)
    if start == home:
        plan.notes.append(f"DNS already at {format_weights(home)}: no traffic to shift")
        return plan
    plan.changes.append(shift_change(rb, start, home))
    if (quiet := small_step(rb, start, home, original)) is not None:
        plan.notes.append(quiet)
    if rb.spec.dns.switch is DnsSwitch.routing_controls:
        plan.notes.append(
            "planned work on Route53's control plane: each step is a ChangeResourceRecordSets, and the routing "
            "controls go On with the first; while the control plane does not answer, the step holds and goes on when it does"
        )
    for region, role in ((n, r.role) for n, r in rb.regions.items()):
        if region != original and role is Role.standby and start.get(region, 0) > 0:
            _scale_changes(plan, rb, region, live, "standby")
    return plan


def shift_change(rb: Runbook, start: dict[str, int], home: dict[str, int]) -> str:
    """The gradual shift, with every region's weights at every step: a step is a percent of
    the way from the start weights to home, which is the returning region's share of all
    traffic only when two regions serve."""
    shift = rb.spec.traffic_shift
    steps = "".join(f"\n       {p}%: {format_weights(shift_weights(start, home, p))}" for p in shift.steps)
    return (
        f"shift DNS {format_weights(start)} -> {format_weights(home)} in {len(shift.steps)} step(s), "
        f"bake {format_duration(shift.bake)} each; each step is that percent of the way from these "
        f"weights to home:{steps}"
    )


def small_step(rb: Runbook, start: dict[str, int], home: dict[str, int], original: str) -> str | None:
    """When the first step gives the returning region less of all traffic than its percent
    (more than two regions serve at home), what its analysis does with few requests."""
    first = rb.spec.traffic_shift.steps[0]
    share = shift_weights(start, home, first)[original]
    if share >= first:
        return None
    enough = max(rb.spec.traffic_shift.rollback.min_requests, 1)
    return (
        f"the {first}% step gives {original} {share}% of all traffic ({first}% of the way to its home "
        f"share of {home[original]}%): a bake in which it serves fewer than {enough} request(s) "
        f"(spec.traffic_shift.rollback.min_requests) is judged by probe requests the analysis sends "
        f"itself ({max(enough, PROBE_REQUESTS_MIN)} or more), not by users' traffic"
    )

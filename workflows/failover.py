"""FailoverWorkflow: move serving away from a failed region (docs/architecture.md, "Procedures").

graceful:   preflight -> prepare -> warm-up -> health gate -> approval -> DNS switch
            -> post-switch validation
ungraceful: preflight -> approval -> (DNS switch || prepare) -> warm-up -> health gate
            -> post-switch validation
The runbook's blocks (workflows/blocks.py) run at their stages: prepare beside the serving
tier's, before_switch right before the switch, after_switch after the post-switch
validation (part of the recovery), deactivate after it (the region left).

How ungraceful keeps the invariant "traffic never moves to a region that failed its
health gate": ungraceful is for a region that is already dark, so waiting for the target
to pass its gate first only lengthens the outage. DNS therefore moves before the gate, but
only to targets that have not failed one: preflight must reach each target's cluster (an
unreachable target stops the run before DNS is touched), and the gate runs as soon as the
target is ready. If some targets then fail it, DNS is re-weighted onto the ones that passed;
if none passed (or a target could not be prepared, or the guardrail forbids narrowing to
the ones that passed), the failed region is gated again: DNS
goes back to it only if it passes, else stays where it is (never zero targets), and the run
fails loudly with the evidence. Graceful never moves DNS before every
target passed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NoReturn

from temporalio import workflow
from temporalio.exceptions import ActivityError, is_cancelled_exception

with workflow.unsafe.imports_passed_through():
    from activities import contracts as c
    from workflows import calls
    from workflows.branches import together, together_by_name
    from workflows.control import Run
    from workflows.failures import NoHealthyDestination, PhaseFailed, error_type, explain, tolerant
    from workflows.plan import (
        PlanError,
        backup_ages,
        control_plane_down,
        failover_targets,
        failover_weights,
        format_weights,
        needs_control_plane,
        rpo_lags,
    )
    from workflows.types import FailoverInput, RunResult, WorldState
    from workflows.versions import COLD_START
    from workflows.world import workloads


@dataclass(frozen=True)
class Found:
    """What a failover's preflight read, by name."""

    dns: c.DnsState
    targets: list[c.ReplicaState]  # the targets' clusters (a target whose workloads a Velero restore brings back: absent)
    failed: c.ReplicaState | str  # the failed region's cluster, or why it could not be read
    copies: list[c.VerifyResult]  # each target's copy of each model
    sources: list[c.VerifyResult]  # the failed region's copies (0.2.0) that could be read
    backups: list[c.VeleroBackupInfo]  # the Velero backup a restore into each target would use (0.2.0)


@workflow.defn
class FailoverWorkflow(Run):
    action = "failover"

    @workflow.init
    def __init__(self, input: FailoverInput) -> None:
        super().__init__(input)
        self.targets: list[str] = []
        self.verified: list[c.VerifyResult] = []  # preflight's verdict on each target's copies

    @workflow.run
    async def run(self, input: FailoverInput) -> RunResult:
        return await self.execute(self.procedure)

    async def procedure(self) -> None:
        request = self.input
        why = f": {request.reason}" if request.reason else ""
        who = f" by {request.requested_by}" if request.requested_by else ""
        self.timeline.say(
            f"{request.strategy} failover of {self.runbook.name} away from {request.failed_region}"
            f" (trigger {request.trigger}{who}){why}"
        )
        if request.override_safety_rules:
            self.timeline.say(
                f"break-glass: the routing-control switch may override safety rule(s) "
                f"{', '.join(request.override_safety_rules)} (--override-safety-rule)"
            )
        weights = await self.preflight()
        hold_if_paused = self.operator.hold_if_paused
        if request.strategy == "ungraceful":
            await self.approval.gate()
            await self.blocks.stage("before_switch")
            try:
                _, gate = await together(self.switch(weights), self.gate_after_switch())
            except Exception as exc:
                if not self.traffic.moved or self.operator.abort is not None or is_cancelled_exception(exc):
                    raise  # DNS never started moving, or an abort: compensation decides
                try:
                    await self.traffic.finish()  # the shielded switch may still be in flight
                except Exception:  # noqa: BLE001 - the switch itself failed: compensation decides
                    raise exc from None
                await self.recheck_failed_region(f"the targets could not be prepared ({explain(exc)})")
            await self.narrow_or_fail(gate)
        else:
            await hold_if_paused()
            await self.prepare()
            await hold_if_paused()
            await self.workloads.warm_up(self.targets)
            await self.health_gate("health-gate", self.targets)
            await self.approval.gate()
            await hold_if_paused()
            await self.blocks.stage("before_switch")
            await self.switch(weights, fresh=self.targets)
        await self.health_gate("post-switch-validation", self.targets)
        await self.blocks.stage("after_switch")
        self.mark_recovered()
        await self.blocks.stage("deactivate")

    # ------------------------------------------------------------------ phases
    async def preflight(self) -> dict[str, int]:
        """Read-only: DNS, the clusters, the artifacts. Records the "before" state and
        stops the run before any change if a target cannot be used."""
        rb, failed = self.runbook, self.input.failed_region
        async with self.phase("preflight"):
            self.targets = failover_targets(rb, failed, self.input.target_regions)
            models = [(t, m) for t in self.targets for m in rb.spec.models]
            found = await self._read(models)
            self.verified = found.copies
            before = found.dns.weights()
            self.traffic.found(before)
            reachable, unreachable = list(found.targets), []
            if isinstance(found.failed, c.ReplicaState):
                reachable.append(found.failed)
            else:
                unreachable.append(failed)
                self.timeline.note("preflight", f"{failed} cluster unreachable ({found.failed}); expected in an outage")
            replicas, ready = workloads(reachable)
            self.before = WorldState(dns=before, replicas=replicas, ready=ready, unreachable=unreachable)

            restoring = self.workloads.restores
            for state in found.targets:
                have = {f"{d.namespace}/{d.name}" for d in state.deployments}
                missing = [
                    f"{w.namespace}/{w.deployment}"
                    for w in rb.workloads_in(state.region)
                    if f"{w.namespace}/{w.deployment}" not in have
                ]
                if missing and not restoring:
                    raise PhaseFailed(
                        f"{state.region}: deployment(s) {', '.join(missing)} not found; restore them "
                        "(add failover to spec.backups.velero.restore_on) or choose another target with --to"
                    )
            for result in self.verified:
                model = next(m for m in rb.spec.models if m.name == result.model)
                if result.problems and not model.archive:
                    raise PhaseFailed(
                        f"{result.region}: {len(result.problems)} problem(s) with {result.model} "
                        f"{result.version} (e.g. {result.problems[0].key} {result.problems[0].problem}) "
                        "and the runbook names no archive to restore from"
                    )
            if self.v2:
                self.gates.check_rpo(
                    "preflight", rpo_lags(rb, self.verified, found.sources) + backup_ages(rb, found.backups, workflow.now())
                )
            if self.patches.v4:
                # 0.4.0-cold-start: the images and the GPU quota gate as capacity does.
                pulls = workflow.patched(COLD_START)
                await self.gates.check_capacity("preflight", self.targets, self.input.strategy, pulls=pulls)
            await self.blocks.preflight(
                failed, self.targets[0], unreachable, graceful=self.input.strategy == "graceful"
            )
            weights = failover_weights(rb, failed, self.targets, before)
            if found.dns.control_plane_down:
                raise PhaseFailed(control_plane_down(rb, weights, found.dns.control_plane_down))
            self.traffic.heading(weights)
            self.timeline.note(
                "preflight",
                f"targets {', '.join(self.targets)}; DNS {format_weights(before)} -> {format_weights(weights)}",
            )
            return weights

    async def _read(self, models: list[tuple[str, Any]]) -> Found:
        """Preflight's reads, side by side, in the order their activities are scheduled."""
        rb, failed = self.runbook, self.input.failed_region
        # 0.2.0: the failed region's copies (one try: it may be dark) and the Velero backup
        # a restore would use, for the RPO check.
        sources = rb.spec.models if self.v2 else []
        backups = self.targets if self.v2 and self.workloads.restores else []
        # 0.4.0: a switch by weights needs Route53's control plane: known now, before any change.
        control_plane = self.patches.v4 and needs_control_plane(rb)
        reads = await together_by_name(
            dns=[calls.dns_read(rb, control_plane=control_plane)],
            targets=[self._target_read(t) for t in self.targets],
            # The failed region may well be unreachable: one try, and that is fine.
            failed=[tolerant(calls.kube_read(rb, failed, attempts=1))],
            copies=[calls.artifacts_verify(rb, t, m.name, m.version) for t, m in models],
            sources=[tolerant(calls.artifacts_verify(rb, failed, m.name, m.version, attempts=1)) for m in sources],
            backups=[calls.velero_backup(rb, t) for t in backups],
        )
        return Found(
            dns=reads["dns"][0],
            targets=[k for k in reads["targets"] if k is not None],
            failed=reads["failed"][0],
            copies=reads["copies"],
            sources=[v for v in reads["sources"] if isinstance(v, c.VerifyResult)],
            backups=reads["backups"],
        )

    async def prepare(self) -> None:
        async with self.phase("prepare"):
            if self.v2:
                await together(*(self._prepare_region(t) for t in self.targets), *self.blocks.beside("prepare"))
                return
            branches = [self.workloads.bring_up("prepare", t) for t in self.targets]
            branches += [self._restore(v) for v in self.verified if v.problems]
            await together(*branches)

    async def _prepare_region(self, region: str) -> None:
        """Scale up while the region's artifacts are repaired; pods that started before the
        repair serve what they loaded, so the repair is followed by a rollout restart."""
        repairs = [v for v in self.verified if v.problems and v.region == region]
        await together(self.workloads.bring_up("prepare", region), *(self._restore(v) for v in repairs))
        if repairs:
            await self.workloads.restart_pods("prepare", region)

    async def health_gate(self, name: str, regions: list[str]) -> None:
        await self.gates.must_pass(
            name, regions,
            lambda: "DNS not changed" if name == "health-gate" else f"DNS left at {format_weights(self.traffic.held)}",
        )

    async def switch(self, weights: dict[str, int], fresh: list[str] | None = None) -> None:
        async with self.phase("dns-switch"):
            # Graceful: every target passed its gate (and, after a wait, a fresh check).
            # Ungraceful: see the module docstring.
            await self.traffic.move(weights, phase="dns-switch", good=True, fresh=fresh)

    async def gate_after_switch(self) -> list[c.HealthResult]:
        """Ungraceful: prepare, warm up and gate the targets while DNS propagates."""
        await self.prepare()
        await self.workloads.warm_up(self.targets)
        async with self.phase("health-gate"):
            results = await self.gates.gate("health-gate", self.targets)
            if any(not r.passed for r in results):
                self.timeline.note("health-gate", outcome="failed")
            return results

    async def narrow_or_fail(self, results: list[c.HealthResult]) -> None:
        failing = {r.region for r in results if not r.passed}
        if not failing:
            return
        passing = [t for t in self.targets if t not in failing]
        failed_gate = f"{', '.join(sorted(failing))} failed the health gate"
        if not passing:
            await self.recheck_failed_region(
                f"no target passed its health gate ({', '.join(sorted(failing))})", frozenset(failing)
            )
        try:
            narrowed = failover_weights(
                self.runbook,
                self.input.failed_region,
                passing,
                self.before.dns if self.before else {},
                exclude=frozenset(failing),
            )
        except PlanError as exc:  # too few passing targets for the runbook's guardrail
            await self.recheck_failed_region(f"{failed_gate} and traffic cannot be narrowed: {exc}", frozenset(failing))
        async with self.phase("narrow-dns"):
            await self.traffic.move(narrowed, phase="narrow-dns", good=True)
        raise PhaseFailed(f"{failed_gate}; traffic narrowed to {format_weights(narrowed)}")

    async def recheck_failed_region(self, problem: str, failing: frozenset[str] = frozenset()) -> NoReturn:
        """Ungraceful, DNS already moved, and the targets could not be brought up or gated:
        traffic sits on regions that never passed a gate. If the region we left passes its own
        gate now (the outage was brief, or it was never as dark as the trigger said), DNS goes
        back to the weights from before the run, to those of its regions that pass a check
        now and are not among the targets that just `failing` their gate; otherwise it stays
        where it is, the least bad place. Either way the run fails loudly."""
        failed = self.input.failed_region
        async with self.phase("recheck-failed-region"):
            (result,) = await self.gates.gate("recheck-failed-region", [failed])
            back = result.passed and self.before is not None
            if back and self.before is not None:
                destination = self.before.dns
                if self.v2:
                    try:
                        destination = await self.traffic.guarded(
                            self.before.dns, "recheck-failed-region", exclude=failing, passed=frozenset({failed})
                        )
                    except NoHealthyDestination as exc:
                        self.timeline.note("recheck-failed-region", str(exc))
                        back = False
                if back:
                    await self.traffic.move(destination, phase="recheck-failed-region", good=True)
            if not back:
                self.timeline.note("recheck-failed-region", outcome="failed")
        if back:
            raise PhaseFailed(f"{problem}, but {failed} passed its own: DNS returned to {format_weights(self.traffic.held)}")
        raise PhaseFailed(
            f"{problem}, and {failed} failed its gate too: DNS left at {format_weights(self.traffic.held)}; "
            "fix a region's health, then set the weights or run the failover again"
        )

    # ------------------------------------------------------------------ branches
    async def _restore(self, verified: c.VerifyResult) -> None:
        """The archive restore of a target's damaged copy, within what is left of the RTO."""
        elapsed = (workflow.now() - self.started_at).total_seconds() * self.speed
        budget = max(self.runbook.spec.objectives.rto.total_seconds() - elapsed, 0.0)
        await self.workloads.restore_artifacts("prepare", verified, budget)

    async def _target_read(self, region: str) -> c.ReplicaState | None:
        try:
            return await calls.kube_read(self.runbook, region)
        except ActivityError as exc:
            if is_cancelled_exception(exc):
                raise
            if error_type(exc) == c.ErrorType.KUBE_NOT_FOUND and self.workloads.restores:
                # The cluster answers; the workloads are what the Velero restore brings back.
                self.timeline.note("preflight", f"{region}: {explain(exc)}; the Velero restore in prepare creates it")
                return None
            raise PhaseFailed(
                f"target region {region}: cluster not usable ({explain(exc)}); fix it or choose another target with --to"
            ) from None

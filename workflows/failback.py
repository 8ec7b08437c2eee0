"""FailbackWorkflow: return serving to the original region once it has recovered.

preflight -> (restore the original region || sync artifacts DR -> original) -> warm-up
-> health gate -> approval -> weighted shift (workflows/shift.py) -> DR back to standby.
The runbook's blocks (workflows/blocks.py) run at their stages: prepare beside the restore
and the sync, before_shift before the first step, after_shift after 100 %, deactivate last.

Until the shift has passed its last step, the DR state found in preflight is the last
good state: a degraded step, a failure or an abort returns all traffic there. The DR
region is scaled back to standby only after the original region carries 100% healthily.
"""

from __future__ import annotations

from temporalio import workflow
from temporalio.exceptions import ActivityError, is_cancelled_exception

with workflow.unsafe.imports_passed_through():
    from activities import contracts as c
    from drpilot.domain.runbook import Role
    from workflows import calls
    from workflows.branches import together, together_by_name
    from workflows.control import Run
    from workflows.failures import PhaseFailed, error_type, explain
    from workflows.plan import backup_ages, check_region, failback_home, format_weights, serving
    from workflows.shift import Shift, shift_traffic
    from workflows.types import FailbackInput, RunResult, WorldState
    from workflows.world import workloads


@workflow.defn
class FailbackWorkflow(Run):
    action = "failback"

    @workflow.init
    def __init__(self, input: FailbackInput) -> None:
        super().__init__(input)
        self.original = input.original_region  # the region traffic returns to

    @workflow.run
    async def run(self, input: FailbackInput) -> RunResult:
        return await self.execute(self.procedure)

    async def procedure(self) -> None:
        request = self.input
        why = f": {request.reason}" if request.reason else ""
        self.timeline.say(f"failback of {self.runbook.name} to {self.original} (trigger {request.trigger}){why}")
        start, home, dr = await self.preflight()
        await self.operator.hold_if_paused()
        prepared = await together(self.restore_region(), self.sync_artifacts(dr), *self.blocks.beside("prepare"))
        copied = prepared[1]
        if self.v2 and copied:
            # The pods came up while the artifacts were being copied in: replace them.
            async with self.phase("restart-pods"):
                await self.workloads.restart_pods("restart-pods", self.original)
        await self.operator.hold_if_paused()
        await self.workloads.warm_up([self.original], named=False)
        await self.gates.must_pass("health-gate", [self.original], lambda: "no traffic was moved")
        await self.approval.gate()
        await self.blocks.stage("before_shift")
        if start == home:
            self.timeline.skip("shift", f"DNS already at {format_weights(home)}")
        else:
            await shift_traffic(self, Shift(start=start, home=home, region=self.original))
        # Every step passed its analysis: home is now the last good state.
        self.traffic.confirm(home)
        await self.blocks.stage("after_shift")
        self.mark_recovered()
        await self.scale_down(dr)
        await self.blocks.stage("deactivate")

    async def preflight(self) -> tuple[dict[str, int], dict[str, int], list[str]]:
        rb = self.runbook
        async with self.phase("preflight"):
            check_region(rb, self.original, "original region")
            regions = list(rb.regions)
            reads = await together_by_name(dns=[calls.dns_read(rb)], clusters=[self._read(r) for r in regions])
            start = reads["dns"][0].weights()
            states = dict(zip(regions, reads["clusters"], strict=True))
            if not isinstance(states[self.original], c.ReplicaState):
                raise PhaseFailed(
                    f"original region {self.original}: cluster not reachable ({states[self.original]}); "
                    "failback needs it recovered first"
                )
            self.traffic.found(start)
            reachable = {r: s for r, s in states.items() if isinstance(s, c.ReplicaState)}
            replicas, ready = workloads(reachable.values())
            self.before = WorldState(
                dns=start, replicas=replicas, ready=ready, unreachable=[r for r in regions if r not in reachable]
            )
            if self.v2 and self.workloads.restores:
                backup = await calls.velero_backup(rb, self.original)
                self.gates.check_rpo("preflight", backup_ages(rb, [backup], workflow.now()))
            dr = [r for r in serving(start) if r != self.original]
            home = failback_home(rb, self.original, start)
            self.traffic.heading(home)
            # {source}: the DR region carrying the most traffic (where the data tier writes now).
            others = dr or [r for r in regions if r != self.original]
            source = max(others, key=lambda r: (start.get(r, 0), r))
            await self.blocks.preflight(source, self.original, self.before.unreachable)
            if not dr and start != home:
                raise PhaseFailed(f"DNS sends no traffic outside {self.original} ({format_weights(start)}): nothing to fail back from")
            self.timeline.note("preflight", f"DR region(s) {', '.join(dr) or 'none'}; DNS {format_weights(start)} -> {format_weights(home)}")
            return start, home, dr

    async def restore_region(self) -> None:
        async with self.phase("restore"):
            await self.workloads.bring_up("restore", self.original, named=False)

    async def sync_artifacts(self, dr: list[str]) -> int:
        """Copy DR's artifacts back; how many files were copied."""
        models = self.runbook.spec.models
        if not models:
            self.timeline.skip("sync-artifacts", "the runbook lists no models")
            return 0
        copied = 0
        async with self.phase("sync-artifacts"):
            if dr:
                # The DR region carrying the most traffic has the artifacts that served it.
                source = max(dr, key=lambda r: (self.traffic.held.get(r, 0), r))
                synced = await together(
                    *(calls.artifacts_sync(self.runbook, m.name, m.version, source, self.original) for m in models)
                )
                verified = [s.verify for s in synced]
                copied = sum(len(s.copied) for s in synced)
                for m, s in zip(models, synced, strict=True):
                    self.timeline.note("sync-artifacts", f"{m.name}: {len(s.copied)} copied from {source}, {s.unchanged} unchanged")
            else:
                verified = await together(
                    *(calls.artifacts_verify(self.runbook, self.original, m.name, m.version) for m in models)
                )
            bad = [v for v in verified if not v.ok]
            if bad:
                first = bad[0].problems[0]
                raise PhaseFailed(
                    f"{self.original}: {bad[0].model} {bad[0].version} has {len(bad[0].problems)} problem(s) "
                    f"after sync (e.g. {first.key} {first.problem})"
                )
        return copied

    async def scale_down(self, dr: list[str]) -> None:
        standby = [r for r in dr if self.runbook.regions[r].role is Role.standby]
        if not standby:
            self.timeline.skip("scale-down", "no standby region to return to standby replicas")
            return
        async with self.phase("scale-down"):
            results = await together(*(calls.kube_scale(self.runbook, r, "standby", self.speed) for r in standby))
            for s in results:
                shown = ", ".join(f"{d.namespace}/{d.name} {d.replicas}" for d in s.deployments)
                self.timeline.note("scale-down", f"{s.region} back to standby: {shown}")

    async def _read(self, region: str) -> c.ReplicaState | str:
        try:
            return await calls.kube_read(self.runbook, region, attempts=1 if region != self.original else 3)
        except ActivityError as exc:
            if is_cancelled_exception(exc):
                raise
            if region == self.original and error_type(exc) == c.ErrorType.KUBE_NOT_FOUND and self.workloads.restores:
                # The recovered cluster answers but lost its workloads: the restore brings them back.
                self.timeline.note("preflight", f"{region}: {explain(exc)}; the Velero restore creates it")
                return c.ReplicaState(region=region, deployments=[])
            return explain(exc)

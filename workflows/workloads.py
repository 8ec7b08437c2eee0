"""What failover and failback do to a region's workloads: bring them up (a Velero restore,
then scale to active), restore damaged artifacts from the archive, replace pods that loaded
artifacts before their repair, and warm the models up."""

from __future__ import annotations

from dataclasses import dataclass, field

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities import contracts as c
    from drpilot.domain.runbook import Action as RunbookAction
    from workflows import calls
    from workflows.branches import together
    from workflows.facts import RunFacts
    from workflows.failures import PhaseFailed
    from workflows.timeline import Timeline


def cold_start_text(cold: c.ColdStart, speed: float) -> str:
    """e.g. "ml-serving/vllm, 5 pods: scheduled +2.0s, pulled +41.0s, started +42.0s, ready +61.0s"
    (and, once the warm-up has run, "model version ready +63.0s, warmed +80.0s")."""
    stages = cold.stages()
    if cold.version_ready is None and cold.warmed is None:
        stages = stages[:4]  # before the warm-up: those stages are still to come
    text = f"{cold.workload}, {cold.pods} pods: " + ", ".join(
        f"{n} +{s:.1f}s" if s is not None else f"{n} not seen" for n, s in stages
    )
    if speed > 1 and cold.ready is not None:
        text += f" (ready ~{cold.ready * speed:.0f}s at speed 1)"
    return text


def restore_name(action: str, runbook: str) -> str:
    """Velero Restore name: one per run, stable across retries and worker restarts."""
    run = workflow.info().run_id.split("-")[0]
    return f"drpilot-{action}-{runbook}"[:50].rstrip("-") + f"-{run}"


@dataclass(eq=False, kw_only=True)
class Workloads:
    run: RunFacts
    timeline: Timeline
    # Every scale-up's cold start, per workload, completed by the region's warm-up: the run's result.
    cold_starts: list[c.ColdStart] = field(default_factory=list)

    @property
    def restores(self) -> bool:
        """This action brings the workloads back with a Velero restore (backups.velero.restore_on)."""
        velero = self.run.runbook.spec.backups.velero
        return velero is not None and RunbookAction(self.run.action) in velero.restore_on

    async def bring_up(self, phase: str, region: str, *, named: bool = True) -> None:
        """The Velero restore (when the runbook asks for one), then scale to active and wait
        until ready; noted in `phase` (`named`: the restore's note names the region)."""
        if self.restores:
            name = restore_name(self.run.action, self.run.runbook.name)
            restored = await calls.velero_restore(self.run.runbook, region, name, self.run.speed)
            where = f"{region}: " if named else ""
            self.timeline.note(phase, f"{where}velero restore {restored.name} {restored.phase}")
            if restored.phase != "Completed":
                raise PhaseFailed(
                    f"velero restore {restored.name} in {region} ended {restored.phase} "
                    f"({restored.errors} errors, {restored.warnings} warnings): velero restore describe {restored.name}"
                )
        scaled = await calls.kube_scale(self.run.runbook, region, "active", self.run.speed)
        shown = ", ".join(f"{d.namespace}/{d.name} {d.ready}/{d.replicas}" for d in scaled.deployments)
        self.timeline.note(phase, f"{region}: {shown} ready")
        for cold in scaled.cold_start:
            self.timeline.note(phase, f"{region}: cold start {cold_start_text(cold, self.run.speed)}")
            self.cold_starts.append(cold.model_copy(update={"region": region}))

    async def restore_artifacts(self, phase: str, verified: c.VerifyResult, budget_seconds: float) -> None:
        """A damaged copy of a model restored from the archive within `budget_seconds`."""
        restored = await calls.artifacts_restore(
            self.run.runbook, verified.region, verified.model, verified.version, budget_seconds, self.run.speed,
            nbytes=verified.bytes,
        )
        if not restored.verify.ok:
            first = restored.verify.problems[0]
            raise PhaseFailed(
                f"{verified.region}: {verified.model} still has {len(restored.verify.problems)} problem(s) "
                f"after the archive restore (e.g. {first.key} {first.problem})"
            )
        self.timeline.note(
            phase, f"{verified.region}: restored {len(restored.restored)} file(s) of {verified.model} ({restored.tier})"
        )

    async def restart_pods(self, phase: str, region: str) -> None:
        info = workflow.info()
        restarted = await calls.rollout_restart(
            self.run.runbook, region, f"{info.workflow_id}/{info.run_id}/artifacts", self.run.speed
        )
        shown = ", ".join(restarted.restarted) or "already restarted"
        self.timeline.note(phase, f"{region}: rollout restart after the artifacts were repaired ({shown})")

    async def warm_up(self, regions: list[str], *, named: bool = True) -> None:
        """The runbook's warm-up requests against each region (`named`: each note names it)."""
        if not self.run.runbook.spec.warmup:
            self.timeline.skip("warm-up", "the runbook has no warm-up requests")
            return
        async with self.timeline.phase("warm-up"):
            results = await together(*(calls.warmup(self.run.runbook, r, self.run.speed) for r in regions))
            for r in results:
                where = f"{r.region}: " if named else ""
                self.timeline.note(
                    "warm-up",
                    f"{where}{r.requests} requests, {r.failures} failed, p50 {r.p50_ms:.0f}ms p99 {r.p99_ms:.0f}ms",
                    evidence=[j.evidence(r.region) for j in r.judged],
                )
                self._warmed(r)

    def _warmed(self, warm: c.WarmupResult) -> None:
        """The region's cold starts completed by its warm-up (the first one after the scale-up)."""
        for i, cold in enumerate(self.cold_starts):
            if cold.region == warm.region and cold.warmed is None:
                self.cold_starts[i] = cold = cold.warmed_by(warm)
                if cold.warmed is not None:
                    self.timeline.note("warm-up", f"{warm.region}: cold start {cold_start_text(cold, self.run.speed)}")

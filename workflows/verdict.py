"""A run's RTO and its verdict against the objective (a failover's; a failback is paced by
its bakes, so its time home is told, not judged). At rehearsal speed the objective is
judged on the projection to speed 1 (workflows/projection.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from workflows import projection
    from workflows.facts import RunFacts
    from workflows.timeline import Timeline
    from workflows.types import RtoProjection, Status


@dataclass(eq=False, kw_only=True)
class Verdict:
    run: RunFacts
    timeline: Timeline
    rto_seconds: float | None = field(default=None, init=False)  # start to recovery, on this run's clock
    projection: RtoProjection | None = field(default=None, init=False)
    _path: projection.Path | None = field(default=None, init=False)  # the run's critical path

    @property
    def objective(self) -> float:
        return self.run.runbook.spec.objectives.rto.total_seconds()

    def start(self) -> None:
        """Follow the run's critical path from here (before its steps start as a task, which
        copies the context)."""
        self._path = projection.start()

    def recovered(self, started_at: datetime) -> None:
        self.rto_seconds = (workflow.now() - started_at).total_seconds()
        if self._path is not None:
            self.projection = projection.summarise(self._path, self.rto_seconds, self.run.speed)

    def rto(self, status: Status) -> float | None:
        """The RTO of a run that ended `status` (None unless it completed), told in the timeline."""
        rto = self.rto_seconds if status == "completed" else None
        if rto is not None and self.run.action == "failback":
            projected = (
                f" at speed {self.run.speed:g}; projected at speed 1: {self.projection.projected_seconds:.0f}s"
                if self.projection is not None else ""
            )
            self.timeline.say(f"all traffic home after {rto:.1f}s{projected}")
        elif rto is not None:
            objective = self.objective
            verdict = "met" if self.unscaled(rto) <= objective else "MISSED"
            if self.projection is not None:
                p = self.projection
                self.timeline.say(
                    f"RTO {rto:.1f}s at speed {self.run.speed:g}; projected at speed 1: {p.projected_seconds:.0f}s "
                    f"(±{p.uncertainty_seconds:.0f}s) vs objective {objective:.0f}s: {verdict} (projection)"
                )
            else:
                self.timeline.say(f"RTO {rto:.1f}s vs objective {objective:.0f}s: {verdict}")
        return rto

    def unscaled(self, rto: float) -> float:
        """The RTO at speed 1: the projection, else (a run without one) the upper bound."""
        return self.projection.projected_seconds if self.projection is not None else rto * self.run.speed

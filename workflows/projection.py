"""A rehearsal's RTO at speed 1: the honest projection.

Rehearsing at speed S divides every wait by S: the engine's own (DNS TTL, bakes, the
analysis sample) and the providers' (pods starting, Route53 PENDING, Velero and Glacier
restores, the pauses between health rounds). Everything else takes its real time at any
speed: Temporal scheduling activities, requests to the providers and the models, a person
approving. Multiplying the measured RTO by S would multiply those too. So the projection is
what was measured, with each scaled wait on the run's critical path taken out and put back
at its unscaled length: activities report theirs (`ScaledWait`, activities/waits.py), the
workflow adds its timers.

The critical path: branches of `branches.together` run side by side, each keeping its own
waits (a context variable, which asyncio copies into every task it creates). When they
join, the branch that would be longest at speed 1 is on the path: the parent adopts its
waits, and corrects its clock by how much that branch's measured time falls short of the
join's (the branch that was longest here may not be the longest at speed 1).

It issues no command: it reads activity results and the workflow clock, so the command
sequence is unchanged and every history replays.
"""

from __future__ import annotations

from collections.abc import Awaitable
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeVar

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities import contracts as c
    from workflows.types import RtoProjection

T = TypeVar("T")


@dataclass
class Path:
    """The scaled waits of one branch of the run, in order, and its clock correction."""

    waits: list[c.ScaledWait] = field(default_factory=list)
    correction: float = 0.0
    ended: datetime | None = None

    def extra(self) -> float:
        """Seconds this branch would take longer at speed 1 than it took here."""
        return sum(w.unscaled_seconds - w.seconds for w in self.waits) + self.correction


def _branch() -> ContextVar[Path | None] | None:
    """The run's variable for the current branch's path. It lives on the workflow instance,
    not in this module: the workflow sandbox may load this module twice for one run (in the
    sandbox for the workflow's file, and passed through for the modules it imports), and each
    copy would have a variable of its own."""
    return getattr(workflow.instance(), "_rto_branch", None)


def _current() -> Path | None:
    branch = _branch()
    return None if branch is None else branch.get()


def start() -> Path:
    """The run's own path, from here on (call before the run's steps are started as a task)."""
    path = Path()
    branch: ContextVar[Path | None] = ContextVar("drpilot_rto_branch", default=None)
    branch.set(path)
    workflow.instance()._rto_branch = branch
    return path


def record(waits: list[c.ScaledWait]) -> None:
    """Scaled waits that just ended on the current branch."""
    path = _current()
    if path is not None:
        path.waits.extend(waits)


def timer(kind: str, scaled: float, unscaled: float) -> None:
    """A workflow timer of `scaled` seconds that stands for `unscaled` at speed 1."""
    if scaled != unscaled:
        record([c.ScaledWait(kind=kind, seconds=scaled, unscaled_seconds=unscaled)])


def parallel(waits: list[c.ScaledWait]) -> None:
    """Waits of activities that ran side by side and took about as long each: only the
    longest is on the path."""
    if waits:
        record([max(waits, key=lambda w: w.unscaled_seconds - w.seconds)])


def fork(count: int) -> list[Path] | None:
    """A path per branch of a parallel block, or None when no run is projecting."""
    return None if _current() is None else [Path() for _ in range(count)]


async def along(path: Path, work: Awaitable[T]) -> T:
    """`work` as one branch: what it records goes to `path`."""
    branch = _branch()
    assert branch is not None  # fork() gave paths: the run is projecting
    branch.set(path)  # this task's own copy of the context: its siblings are untouched
    try:
        return await work
    finally:
        # Not when the branch is closed with its run evicted from the worker's cache: that
        # happens outside the workflow's event loop (no clock to read), and the run resumes
        # by replay, so there is nothing to record.
        if workflow.in_workflow():
            path.ended = workflow.now()


def join(paths: list[Path], started: datetime) -> None:
    """The branches ended: the one longest at speed 1 joins the current path."""
    parent = _current()
    if parent is None or not paths:
        return
    measured = [((p.ended or workflow.now()) - started).total_seconds() for p in paths]
    projected = [m + p.extra() for m, p in zip(measured, paths, strict=True)]
    longest = max(range(len(paths)), key=projected.__getitem__)
    chosen = paths[longest]
    parent.waits.extend(chosen.waits)
    parent.correction += chosen.correction + measured[longest] - max(measured)


def summarise(path: Path, measured: float, speed: float) -> RtoProjection | None:
    """The projection of a run that recovered after `measured` seconds; None at speed 1."""
    if speed == 1:
        return None
    parts: dict[str, float] = {}
    scaled: dict[str, float] = {}
    for wait in path.waits:
        parts[wait.kind] = parts.get(wait.kind, 0.0) + wait.unscaled_seconds
        scaled[wait.kind] = scaled.get(wait.kind, 0.0) + wait.seconds
    projected = measured + path.extra()
    return RtoProjection(
        speed=speed,
        measured_seconds=round(measured, 3),
        projected_seconds=round(projected, 3),
        waits={k: round(v, 3) for k, v in parts.items()},
        waits_measured={k: round(v, 3) for k, v in scaled.items()},
        other_seconds=round(projected - sum(parts.values()), 3),
        uncertainty_seconds=round(sum(w.uncertainty_seconds for w in path.waits), 3),
    )

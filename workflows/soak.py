"""A drill's soak: serve from the DR side for a while, checking it stays healthy."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from drpilot.domain.measurement import health_needs, rehearsed_length
    from workflows import calls
    from workflows.branches import together_by_name
    from workflows.timeline import Timeline
    from workflows.types import DrillInput
    from workflows.versions import MEASURED_SOAK


async def soak(
    input: DrillInput, targets: list[str], timeline: Timeline, aborted: Callable[[], bool]
) -> tuple[str, list[str]]:
    """Serve from `targets` for spec.drills.soak, checking every soak_interval that they stay
    healthy and no blocking condition holds. The first problem ("" if none) and the blocking
    alerts found firing; an abort ends the soak at once."""
    drills = input.runbook.spec.drills
    length = drills.soak if drills else timedelta(minutes=10)
    every = drills.soak_interval if drills else timedelta(minutes=1)
    speed = input.speed
    timeline.begin("soak")
    # Its health rounds ask Prometheus, which keeps real time: a rehearsal's soak lasts at
    # least what their ranges need, or its checks judge mostly what came before it.
    served = length / speed
    measured = timedelta(seconds=rehearsed_length(length.total_seconds(), speed, health_needs(input.runbook.spec)))
    if measured > served and workflow.patched(MEASURED_SOAK):
        served = measured
    end = workflow.now() + served
    checks = 0
    while workflow.now() < end:
        wait = min(every / speed, end - workflow.now()).total_seconds()
        with contextlib.suppress(TimeoutError):
            await workflow.wait_condition(aborted, timeout=wait, timeout_summary="soak")
        if aborted():
            timeline.end("soak", "aborted", f"aborted after {checks} check(s)")
            return "", []
        checks += 1
        problem, firing = await outcome_condition(input, targets)
        if problem:
            timeline.say(f"soak stopped at check {checks}: {problem}; restoring")
            timeline.end("soak", "failed", problem)
            return problem, firing
    timeline.end("soak", "ok", f"{', '.join(targets)} served for {served.total_seconds():g}s; {checks} check(s) passed")
    return "", []


async def outcome_condition(input: DrillInput, targets: list[str]) -> tuple[str, list[str]]:
    """What ends a soak early: a serving region failing a health round, or a blocking condition."""
    rb = input.runbook
    reads = await together_by_name(
        alerts=[calls.firing_alerts(rb)], health=[calls.health_gate(rb, t, input.speed, rounds=1) for t in targets]
    )
    (alerts,), health = reads["alerts"], reads["health"]
    failing = [h for h in health if not h.passed]
    if failing:
        return "; ".join(h.summary or f"{h.region} failed its health check" for h in failing), []
    if alerts.firing:
        return f"blocking condition(s): {', '.join(alerts.firing)}", list(alerts.firing)
    return "", []

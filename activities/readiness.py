"""A scheduled readiness check's previous verdict (`readiness.previous`): what the schedule's
last finished firing found, so the check tells the runbook's notifiers only when it changed.

Reading it takes the schedule's history from Temporal (drpilot/frontdoor/readiness.py), which
this layer may not import: the worker hands it in as `previous` (drpilot/frontdoor/worker.py).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from temporalio import activity

from activities.contracts import (
    READINESS_PREVIOUS,
    PreviousVerdict,
    PreviousVerdictInput,
    ReadinessResult,
)

# (runbook, the asking run's id) -> the schedule's last finished result other than that run's
Previous = Callable[[str, str], Awaitable[ReadinessResult | None]]


class NoSchedule(Exception):
    """The runbook has no readiness schedule (any more)."""


class ReadinessActivities:
    def __init__(self, previous: Previous):
        self._previous = previous

    @activity.defn(name=READINESS_PREVIOUS)
    async def previous(self, input: PreviousVerdictInput) -> PreviousVerdict:
        try:
            return PreviousVerdict(result=await self._previous(input.runbook, input.run_id))
        except NoSchedule:
            return PreviousVerdict()  # deleted between firing and asking: nothing to compare

    def all(self) -> list[Callable]:
        return [self.previous]

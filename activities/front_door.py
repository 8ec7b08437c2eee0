"""The two activities whose answer only the front door has, because it needs Temporal itself:
a drill's claim at admission (`drill.claim`) and a scheduled readiness check's previous verdict
(`readiness.previous`). This layer may not import the front door, so the worker hands both in
(drpilot/frontdoor/worker.py: `admit` from drpilot/frontdoor/drills.py, `previous` from
drpilot/frontdoor/readiness.py, each over the worker's own client).

A drill claims its runbook as every front door does, first thing, so it never runs beside a
failover of the same runbook or records; a claim the front door cannot answer now raises
`AdmissionUnavailable`, and the drill's retry policy asks again. A scheduled readiness check
asks for what the schedule's last finished firing found, so it tells the runbook's notifiers
only when the verdict changed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.contracts import (
    DRILL_CLAIM,
    READINESS_PREVIOUS,
    Admission,
    Claim,
    ErrorType,
    PreviousVerdict,
    PreviousVerdictInput,
    ReadinessResult,
)

Admit = Callable[[Claim], Awaitable[Admission]]
# (runbook, the asking run's id) -> the schedule's last finished result other than that run's
Previous = Callable[[str, str], Awaitable[ReadinessResult | None]]


class AdmissionUnavailable(Exception):
    """The front door could not answer a claim now (Temporal unreachable, admission kept
    changing under it); one sentence saying why."""


class NoSchedule(Exception):
    """The runbook has no readiness schedule (any more)."""


class FrontDoorActivities:
    """The activities answered by what the worker hands in; each only when it is given."""

    def __init__(self, *, admit: Admit | None = None, previous: Previous | None = None):
        self._admit = admit
        self._previous = previous

    @activity.defn(name=DRILL_CLAIM)
    async def claim(self, claim: Claim) -> Admission:
        assert self._admit is not None  # registered only with it (all())
        try:
            return await self._admit(claim)
        except AdmissionUnavailable as exc:
            raise ApplicationError(str(exc), type=ErrorType.ADMISSION_UNAVAILABLE) from None

    @activity.defn(name=READINESS_PREVIOUS)
    async def previous(self, input: PreviousVerdictInput) -> PreviousVerdict:
        assert self._previous is not None  # registered only with it (all())
        try:
            return PreviousVerdict(result=await self._previous(input.runbook, input.run_id))
        except NoSchedule:
            return PreviousVerdict()  # deleted between firing and asking: nothing to compare

    def all(self) -> list[Callable]:
        return [*([self.claim] if self._admit else []), *([self.previous] if self._previous else [])]

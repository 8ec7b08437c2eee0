"""A drill's claim at admission (`drill.claim`): a drill claims its runbook as every front
door does, first thing, so it never runs beside a failover of the same runbook or records.

Claiming is the front door's job (drpilot/frontdoor/runs.py: the admission workflow, asked
over the worker's own Temporal client), which this layer may not import: the worker hands it
in as `admit` (drpilot/frontdoor/worker.py). A claim the front door cannot answer now raises
`AdmissionUnavailable`, and the drill's retry policy asks again.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.contracts import DRILL_CLAIM, Admission, Claim, ErrorType

Admit = Callable[[Claim], Awaitable[Admission]]


class AdmissionUnavailable(Exception):
    """The front door could not answer a claim now (Temporal unreachable, admission kept
    changing under it); one sentence saying why."""


class AdmissionActivities:
    def __init__(self, admit: Admit):
        self._admit = admit

    @activity.defn(name=DRILL_CLAIM)
    async def claim(self, claim: Claim) -> Admission:
        try:
            return await self._admit(claim)
        except AdmissionUnavailable as exc:
            raise ApplicationError(str(exc), type=ErrorType.ADMISSION_UNAVAILABLE) from None

    def all(self) -> list[Callable]:
        return [self.claim]

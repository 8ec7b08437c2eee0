"""Operator control of a run: pause, resume, abort, and the holds they end.

The Temporal handlers (`pause`, `resume`, `abort` and their validators) stay on the workflow
classes (workflows/control.py), part of the registered definition; they delegate here.
`waited` records that the run held (a pause, a drift hold, an approval wait) since its last
health gate, which makes the next DNS move check its destination again (workflows/gates.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from temporalio import workflow
from temporalio.exceptions import is_cancelled_exception

with workflow.unsafe.imports_passed_through():
    from workflows.failures import Aborted, NoHealthyDestination, PhaseFailed, explain
    from workflows.timeline import Timeline
    from workflows.types import AbortInput, Outcome, PauseInput, RunResult, WaitingFor


@dataclass(eq=False, kw_only=True)
class Operator:
    timeline: Timeline
    paused: bool = field(default=False, init=False)
    hold: WaitingFor | None = field(default=None, init=False)  # what a hold_for() waits on until `resume`
    resumed_by: str = field(default="", init=False)
    waiting_for: WaitingFor | None = field(default=None, init=False)
    waiting_cause: str | None = field(default=None, init=False)  # what the provider said, for a hold on it
    abort: AbortInput | None = field(default=None, init=False)
    finishing: bool = field(default=False, init=False)  # the steps are over: compensation and the result are under way
    waited: bool = field(default=False, init=False)  # a wait (approval, pause, drift) came after the last gate

    # ------------------------------------------------------------------ holds
    async def hold_if_paused(self) -> None:
        if not self.paused:
            return
        self.waiting_for = "resume"
        self.waited = True
        self.timeline.say("paused; `drpilot resume` continues")
        try:
            await workflow.wait_condition(lambda: not self.paused)
        finally:
            self.waiting_for = None

    async def hold_for(self, what: WaitingFor) -> str:
        """Hold until an operator resumes (or aborts, which cancels the wait); who resumed."""
        self.hold = what
        self.waiting_for = what
        self.waited = True
        try:
            await workflow.wait_condition(lambda: self.hold is None)
        finally:
            self.hold = None
            self.waiting_for = None
        return self.resumed_by

    # ------------------------------------------------------------------ requests
    def refuse_when_over(self, result: RunResult | None) -> None:
        if result is not None:
            raise ValueError(f"the run has finished ({result.status})")
        if self.abort is not None:
            raise ValueError(f"the run is being aborted ({self.abort_text()})")
        if self.finishing:
            raise ValueError("the run is finishing")

    def request_abort(self, request: AbortInput) -> None:
        self.abort = request
        self.timeline.say(self.abort_text())

    def pause(self, request: PauseInput) -> None:
        self.paused = True
        self.timeline.say(f"pause requested by {request.by or 'unknown'}; holds at the next step boundary")

    def refuse_pause(self) -> None:
        if self.paused:
            raise ValueError("already paused")

    def resume(self, request: PauseInput) -> str:
        """Ends the pause and the hold; what was resumed."""
        by = request.by or "unknown"
        if self.hold is not None:
            message = f"resumed from the {self.hold} hold"
            self.hold = None
        else:
            message = "resumed"
        self.paused = False
        self.resumed_by = by
        self.timeline.say(f"{message} by {by}")
        return message

    def refuse_resume(self) -> None:
        if not self.paused and self.hold is None:
            raise ValueError("not paused and not holding")

    # ------------------------------------------------------------------ how it ends
    def abort_text(self) -> str:
        if self.abort is None:
            return "aborted"
        who = f" by {self.abort.by}" if self.abort.by else ""
        return f"aborted{who}" + (f": {self.abort.reason}" if self.abort.reason else "")

    def outcome_of(self, exc: BaseException) -> tuple[Outcome, str, list]:
        """How `exc` ends a phase: aborted while an abort is under way, else its own failure."""
        outcome: Outcome = "aborted" if self.abort or is_cancelled_exception(exc) else "failed"
        if isinstance(exc, PhaseFailed) and exc.status == "rolled_back":
            outcome = "rolled_back"
        if isinstance(exc, Aborted):
            outcome = "aborted"
        evidence = exc.evidence if isinstance(exc, PhaseFailed | NoHealthyDestination) else []
        return outcome, explain(exc) if outcome != "aborted" else self.abort_text(), evidence

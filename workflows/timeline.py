"""A run's timeline: its phases with outcome, detail and evidence, and its messages.

One owner for what happened and when; the run, the traffic owner and the shift write to
it, the progress query and the result read it. A drill keeps its own (workflows/drill.py),
opening and closing its phases by hand. No Temporal commands are made here, only
`workflow.now()` and the logger, so moving code in and out of it never alters a history.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities import contracts as c
    from workflows.types import Outcome, PhaseRecord


OutcomeOf = Callable[[BaseException], tuple[Outcome, str, list]]


def _failed(exc: BaseException) -> tuple[Outcome, str, list]:
    return "failed", str(exc), []


class Timeline:
    def __init__(self, on_change: Callable[[], None] | None = None, outcome_of: OutcomeOf = _failed):
        self.phases: list[PhaseRecord] = []
        self.running: list[str] = []  # phases open now, innermost last
        self.messages: list[str] = []
        self._on_change = on_change  # refreshes the run's details in the Temporal UI
        self._outcome_of = outcome_of  # how an exception ends a phase (the run knows: abort or failure)

    def say(self, message: str) -> None:
        self.messages.append(message)
        workflow.logger.info(message)

    def changed(self) -> None:
        """What the run shows has changed (a phase, DNS): refresh its details."""
        if self._on_change is not None:
            self._on_change()

    @asynccontextmanager
    async def phase(self, name: str) -> AsyncIterator[None]:
        """Record the phase around the block; how an exception ends it is the run's call."""
        self.begin(name)
        try:
            yield
        except (Exception, asyncio.CancelledError) as exc:
            outcome, detail, evidence = self._outcome_of(exc)
            self.end(name, outcome, detail, evidence)
            raise
        else:
            self.end(name, "ok")
        # Not `finally`: on GeneratorExit (an evicted run being collected) no workflow API
        # may be called.

    def begin(self, name: str) -> None:
        self.phases.append(PhaseRecord(name=name, started_at=workflow.now()))
        self.running.append(name)
        self.changed()
        workflow.logger.info("phase %s started", name)

    def end(self, name: str, outcome: Outcome, detail: str = "", evidence: list | None = None) -> None:
        self._close(name, outcome, detail, evidence)
        self.running.remove(name)
        self.changed()

    def note(
        self,
        name: str,
        detail: str = "",
        evidence: list[c.CheckEvidence] | None = None,
        outcome: Outcome | None = None,
    ) -> None:
        """Attach detail / evidence (and an outcome other than ok) to the latest phase `name`."""
        i = self._find(name)
        update: dict[str, Any] = {"outcome": outcome} if outcome else {}
        if detail:
            update["detail"] = f"{self.phases[i].detail}; {detail}" if self.phases[i].detail else detail
        if evidence:
            update["evidence"] = [*self.phases[i].evidence, *evidence]
        self.phases[i] = self.phases[i].model_copy(update=update)

    def skip(self, name: str, why: str) -> None:
        now = workflow.now()
        self.phases.append(PhaseRecord(name=name, started_at=now, ended_at=now, outcome="skipped", detail=why))

    def current(self) -> str:
        """The innermost running phase, else the last one, else "starting"."""
        if self.running:
            return self.running[-1]
        return self.phases[-1].name if self.phases else "starting"

    def _close(self, name: str, outcome: Outcome, detail: str = "", evidence: list | None = None) -> None:
        i = self._find(name)
        record = self.phases[i]
        if outcome == "ok" and record.outcome != "running":
            outcome = record.outcome  # a phase may have set its own outcome (e.g. rolled_back)
        self.phases[i] = record.model_copy(
            update={
                "ended_at": workflow.now(),
                "outcome": outcome,
                "detail": "; ".join(d for d in (record.detail, detail) if d),
                "evidence": [*record.evidence, *(evidence or [])],
            }
        )
        workflow.logger.info("phase %s %s %s", name, outcome, detail)

    def _find(self, name: str) -> int:
        for i in range(len(self.phases) - 1, -1, -1):
            if self.phases[i].name == name:
                return i
        raise KeyError(name)


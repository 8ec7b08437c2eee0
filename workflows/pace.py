"""A run's pace: its rehearsal speed and how it sleeps the procedure's own waits."""

from __future__ import annotations

from dataclasses import dataclass

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from workflows import calls, projection
    from workflows.versions import Patches


@dataclass(eq=False, kw_only=True)
class Pace:
    speed: float  # every wait is divided by it (1 in production)
    patches: Patches

    async def sleep(self, seconds: float, *, kind: str, unscaled: float, summary: str) -> None:
        """A wait of the procedure (a DNS TTL, a bake) of `unscaled` seconds at speed 1 and
        `seconds` at this run's speed; counted at its speed-1 length by the projection."""
        if self.patches.v3 and self.speed != 1 and seconds < calls.SHORT_WAIT_SECONDS:
            if seconds > 0:
                await calls.rehearsal_wait(seconds, summary)
        else:
            await workflow.sleep(seconds, summary=summary)
        projection.timer(kind, seconds, unscaled)

"""A rehearsal's short waits, slept in the worker rather than on a Temporal timer.

A workflow timer fires when the server's timer queue reaches it, which on the Temporal dev
server is about a second after it is due, whatever its length (BENCHMARKS.md, "timer fired
after its due time": p50 985 ms). At speed 1 that second vanishes in a 60 s TTL or a
15-minute bake. At rehearsal speed, a TTL of 60 s is a 0.2 s wait at speed 300: the timer
costs five times the wait it stands for, and a failback with ten of them rehearses ten
seconds slower than its own procedure. So a wait already divided by a rehearsal speed and
shorter than `SHORT_WAIT_SECONDS` (workflows/calls.py) is slept here, as a *local* activity:
in the worker, inside the workflow task, with no round trip to the server (`Pace.sleep` in
workflows/pace.py). Production (speed 1) always waits on durable timers.

Sleeping twice has one effect: a worker lost mid-sleep leaves its replacement to sleep again
from the start, a couple of seconds at most, and nothing else happens.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Self

from temporalio import activity

from activities.contracts import REHEARSAL_WAIT
from drpilot.domain.settings import Settings


class RehearsalActivities:
    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        return cls()

    @activity.defn(name=REHEARSAL_WAIT)
    async def wait(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    def all(self) -> list[Callable[..., Any]]:
        return [self.wait]

"""Time as a probe spends it: the rehearsal clock of the health gate, and sleeps that heartbeat.

A rehearsal compresses only waits; requests take their real time. The health gate and the
analysis both wait in ways a long interval must not make look like a dead worker.
"""

from __future__ import annotations

import time
from typing import Any

from temporalio import activity

from activities.contracts import ScaledWait
from activities.waits import slept

HEARTBEAT_EVERY_SECONDS = 1.0


class RehearsalClock:
    """Simulated seconds since it started. A rehearsal compresses only the waits (each
    counts at its full simulated length, slept for length / speed); everything else —
    requests, and a busy machine's scheduling delays — counts at its real duration. At
    speed 1 it is the wall clock; at speed 300 a 60 s gate still gives each round's
    requests the time they take instead of failing a healthy region slower than 0.2 s."""

    def __init__(self, speed: float):
        self.speed = speed
        self.started = time.monotonic()
        self._waited_real = 0.0
        self._waited_simulated = 0.0
        self._held_real = 0.0

    def real(self) -> float:
        return time.monotonic() - self.started

    def elapsed(self) -> float:
        return self.real() - self._waited_real + self._waited_simulated

    def wait(self, simulated: float, details: Any) -> None:
        simulated = max(simulated, 0.0)
        started = time.monotonic()
        sleep_heartbeating(simulated / self.speed, details)
        self._waited_real += time.monotonic() - started
        self._waited_simulated += simulated

    def hold(self, real: float, details: Any) -> None:
        """Wait `real` seconds of real time that only a rehearsal needs (a Prometheus range
        catching up with a compressed gate): at speed 1 the gate's own rounds span it."""
        started = time.monotonic()
        sleep_heartbeating(real, details)
        self._held_real += time.monotonic() - started

    def waits(self) -> list[ScaledWait]:
        """The pauses between rounds, and a hold for the measurement (nothing at speed 1),
        for a rehearsal's RTO projection."""
        held = slept("measurement", self.speed, self._held_real, 0.0)
        return slept("health-interval", self.speed, self._waited_real, self._waited_simulated) + held


def sleep_heartbeating(seconds: float, details: Any) -> None:
    """Sleep, heartbeating `details`, so a long interval does not look like a dead worker."""
    end = time.monotonic() + max(seconds, 0.0)
    while (left := end - time.monotonic()) > 0:
        time.sleep(min(left, HEARTBEAT_EVERY_SECONDS))
        activity.heartbeat(details)

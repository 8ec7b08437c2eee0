"""How long a polled wait stands for at speed 1, for a rehearsal's RTO projection.

A rehearsal at speed S divides what the providers take in their own time (pods starting,
Route53 PENDING, a Velero restore, a Glacier retrieval) by S, and the activity polls for it
every `poll / S` seconds (never faster than its floor). So the twin's process ended
somewhere between the last poll that saw it pending and the first that saw it done. Its
simulated length is that midpoint times S, and at speed 1 the first poll after it would
see it on average half a production interval later. The requests themselves take their
real time at any speed and are counted by the projection as measured, not here.
"""

from __future__ import annotations

import time

from activities.contracts import ScaledWait


class PolledWait:
    """Start it when the thing is asked for; `pending()` on each poll that finds it not yet
    done, `done()` on the one that does."""

    def __init__(self, kind: str, speed: float, poll_seconds: float, started: float | None = None):
        self.kind = kind
        self.speed = speed
        self.poll_seconds = poll_seconds  # the production (speed 1) interval
        self.started = time.monotonic() if started is None else started
        self.last_pending: float | None = None

    def pending(self) -> None:
        self.last_pending = time.monotonic()

    def done(self) -> list[ScaledWait]:
        """The wait, or none: at speed 1 (nothing was scaled) or when the first look found
        it done (nothing was waited for)."""
        if self.speed == 1 or self.last_pending is None:
            return []
        seen = time.monotonic()
        ended = (self.last_pending + seen) / 2 - self.started
        return [
            ScaledWait(
                kind=self.kind,
                seconds=round(seen - self.started, 4),
                unscaled_seconds=round(max(ended, 0.0) * self.speed + self.poll_seconds / 2, 3),
                uncertainty_seconds=round((seen - self.last_pending) / 2 * self.speed + self.poll_seconds / 2, 3),
            )
        ]


def slept(kind: str, speed: float, real_seconds: float, simulated_seconds: float) -> list[ScaledWait]:
    """Sleeps the activity itself divided by the speed (the pauses between health rounds):
    their simulated length is known exactly."""
    if speed == 1 or real_seconds <= 0:
        return []
    return [ScaledWait(kind=kind, seconds=round(real_seconds, 4), unscaled_seconds=round(simulated_seconds, 3))]

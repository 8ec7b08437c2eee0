"""The last measured cold start against the RTO, as pure functions: readiness and
`drpilot runbook plan` judge it the same way.

A failover can move traffic only once its targets' pods are up and warm, then DNS has to
propagate and the health gate has to pass; so the RTO leaves the cold start what remains of
it after the records' longest TTL and the gate's shortest pass ((consecutive - 1) intervals).
A cold start measured in a rehearsal counts at speed 1 (ColdStart.unscaled).
"""

from __future__ import annotations

from datetime import timedelta

from activities.contracts import ColdStart, MeasuredColdStart
from drpilot.domain.durations import format_duration
from drpilot.domain.runbook import Runbook


def rto_left(rb: Runbook) -> float:
    """Seconds of the RTO left for the cold start (see the module docstring); at least 0."""
    spec = rb.spec
    ttl = max(r.ttl for r in spec.dns.records)
    gate = (spec.health.consecutive - 1) * spec.health.interval.total_seconds()
    return max(spec.objectives.rto.total_seconds() - ttl - gate, 0.0)


def _text(seconds: float) -> str:
    return format_duration(timedelta(seconds=round(seconds)))


def cold_start_verdicts(rb: Runbook, measured: MeasuredColdStart) -> list[tuple[str, bool, str]]:
    """Per region the drill brought up: (region, within what the RTO leaves, the sentence),
    e.g. "6 pods ~ 4m10s to ready, 4m40s to warmed, measured in the drill of 2026-12-01; the
    RTO (15m) leaves 13m for it"."""
    out = []
    left, rto = rto_left(rb), rb.spec.objectives.rto
    for region in sorted({c.region for c in measured.cold_starts if c.region}):
        colds = [c for c in measured.cold_starts if c.region == region]

        def slowest(stage: str, colds: list[ColdStart] = colds) -> float | None:
            seen = [s for c in colds if (s := c.unscaled(stage, measured.speed)) is not None]
            return max(seen, default=None)

        ready, warmed = slowest("ready"), slowest("warmed")
        if ready is None:
            continue
        text = f"{sum(c.pods for c in colds)} pods ~ {_text(ready)} to ready"
        if warmed is not None:
            text += f", {_text(warmed)} to warmed"
        text += f", measured in the drill of {measured.at:%Y-%m-%d}"
        if measured.speed != 1:
            text += f" (a rehearsal at speed {measured.speed:g}, projected to speed 1)"
        took = warmed if warmed is not None else ready
        if took <= left:
            out.append((region, True, f"{text}; the RTO ({format_duration(rto)}) leaves {_text(left)} for it"))
        else:
            out.append((region, False, (
                f"{text}: longer than the {_text(left)} the RTO ({format_duration(rto)}) leaves for it after the DNS "
                "TTL and the health gate; keep more standby replicas warm, shorten the image pull and model load, "
                "or revisit objectives.rto"
            )))
    return out

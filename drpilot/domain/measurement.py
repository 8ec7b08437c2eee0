"""How much real time a Prometheus check needs before its answer is about now.

A range selector (`rate(x[1m])`) averages the last minute; an `offset 5m` looks five minutes
back; and any answer is as old as the last scrape. So after something changes (a rolled-back
shift step stops its errors), a check reflects it only after its longest range plus offset,
plus one scrape interval, of *real* time. A rehearsal divides waits by its speed, but
Prometheus keeps real time: a gate or a soak judged by such a check must be given at least
this long, or a rehearsal fails a region that speed 1 would pass (or passes one it would not).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import timedelta

from drpilot.domain.runbook import PromCheck, Spec

# Prometheus's duration syntax (https://prometheus.io/docs/prometheus/latest/querying/basics/#float-literals-and-time-durations):
# one or more <number><unit>, units ms, s, m, h, d, w, y.
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
_DURATION = r"(?:\d+(?:ms|[smhdwy]))+"
# `[5m]`, and the range of a subquery `[30m:1m]` (its resolution is not a lookback).
_RANGE = re.compile(rf"\[\s*({_DURATION})\s*(?::\s*(?:{_DURATION})?\s*)?\]")
_OFFSET = re.compile(rf"\boffset\s+({_DURATION})", re.IGNORECASE)
_PART = re.compile(r"(\d+)(ms|[smhdwy])")


def _seconds(duration: str) -> float:
    return sum(int(n) * _UNITS[unit] for n, unit in _PART.findall(duration))


def lookback_seconds(query: str) -> float:
    """How far back the query reads: its longest range plus its longest offset (0 for an
    instant read of the latest samples)."""
    ranges = [_seconds(m) for m in _RANGE.findall(query)]
    offsets = [_seconds(m) for m in _OFFSET.findall(query)]
    return max(ranges, default=0.0) + max(offsets, default=0.0)


def needed_seconds(checks: Iterable[PromCheck], scrape_interval: timedelta) -> float:
    """Real seconds after a change until every check reflects it: the longest lookback plus
    one scrape interval; 0 without checks (nothing measured over time)."""
    lookbacks = [lookback_seconds(check.query) for check in checks]
    if not lookbacks:
        return 0.0
    return max(lookbacks) + scrape_interval.total_seconds()


def health_needs(spec: Spec) -> float:
    """What the health gate's and the soak's Prometheus checks need (spec.health.prometheus)."""
    return needed_seconds(spec.health.prometheus, spec.health.scrape_interval)


def analysis_needs(spec: Spec) -> float:
    """What the shift analysis's own checks need (spec.traffic_shift.analysis)."""
    return needed_seconds(spec.traffic_shift.analysis, spec.health.scrape_interval)


def rehearsed_length(length: float, speed: float, needed: float) -> float:
    """The real seconds a rehearsal at `speed` gives something `length` seconds long at
    speed 1 that a measurement needing `needed` real seconds judges: its length / speed,
    but never less than the measurement needs (nor more than speed 1 would give)."""
    return max(length / speed, min(length, needed))

"""Prometheus's text exposition format (0.0.4), and its histogram_quantile.

How an analysis without Prometheus reads a region's own /metrics, and how it, the twin's
model servers and their tests turn a latency histogram into a p99 exactly as Prometheus does.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Sample:
    name: str
    labels: dict[str, str]
    value: float


_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?[ \t]+(\S+)(?:[ \t]+-?\d+)?[ \t]*$")
_LABEL = re.compile(r'[ \t]*([a-zA-Z_][a-zA-Z0-9_]*)[ \t]*=[ \t]*"((?:[^"\\]|\\.)*)"[ \t]*(?:,|$)')
_UNESCAPE = {"\\\\": "\\", '\\"': '"', "\\n": "\n"}


def parse_metrics(text: str) -> list[Sample]:
    """Parse Prometheus text exposition format (0.0.4); ValueError names the bad line."""
    samples = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = _SAMPLE.match(line)
        if not match:
            raise ValueError(f"metrics line {number} is not a sample: {line[:120]!r}")
        name, label_text, raw_value = match.groups()
        labels: dict[str, str] = {}
        pos = 0
        label_text = (label_text or "").strip()
        while pos < len(label_text):
            label = _LABEL.match(label_text, pos)
            if not label or label.end() == pos:
                raise ValueError(f"metrics line {number} has malformed labels: {line[:120]!r}")
            labels[label.group(1)] = re.sub(r"\\[\\\"n]", lambda m: _UNESCAPE[m.group(0)], label.group(2))
            pos = label.end()
        try:
            value = float(raw_value)
        except ValueError:
            raise ValueError(f"metrics line {number} has a non-numeric value: {line[:120]!r}") from None
        samples.append(Sample(name, labels, value))
    return samples


def histogram_quantile(q: float, buckets: Iterable[tuple[float, float]]) -> float:
    """Prometheus's histogram_quantile over (upper bound, cumulative count) pairs: linear
    interpolation inside the bucket holding the rank. NaN when there are no observations."""
    ordered = []
    for bound, count in sorted(buckets):
        # increase() extrapolates per series, so cumulative counts can dip; as Prometheus
        # does, never let a bucket hold fewer than the one below it.
        ordered.append((bound, max(count, ordered[-1][1]) if ordered else count))
    if not ordered or ordered[-1][0] != math.inf or ordered[-1][1] <= 0:
        return math.nan
    total = ordered[-1][1]
    rank = q * total
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in ordered:
        if count >= rank:
            if bound == math.inf:
                # Prometheus answers the highest finite bound: the quantile is beyond it.
                return lower_bound
            if count == lower_count:
                return bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / (count - lower_count)
        lower_bound, lower_count = bound, count
    return lower_bound

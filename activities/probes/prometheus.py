"""Asking a region's Prometheus: one instant query, its series, and a runbook check judged.

The health gate, the shift analysis and a drill's blocking queries (activities/drills.py)
all ask Prometheus this way, with one rule for what a failure means: unreachable (worth a
retry) or rejected (no retry changes that).
"""

from __future__ import annotations

import math
from typing import Any

import httpx

from activities.contracts import CheckEvidence
from activities.probes.sending import describe, error_text
from drpilot.domain.runbook import PromCheck


class PromError(Exception):
    """Prometheus gave no answer to a query: `unreachable` when it could not answer (worth a
    retry), else it rejected the query (no retry changes that)."""

    def __init__(self, message: str, *, unreachable: bool = False):
        super().__init__(message)
        self.unreachable = unreachable


def instant_query(http: httpx.Client, prom: str, query: str) -> tuple[str, Any]:
    """One instant query (`GET /api/v1/query`): its resultType and result, as Prometheus
    sent them."""
    try:
        response = http.get(f"{prom}/api/v1/query", params={"query": query}, timeout=10.0)
    except httpx.HTTPError as exc:
        raise PromError(f"Prometheus {prom} unreachable: {error_text(exc)}", unreachable=True) from None
    if response.status_code >= 500 or response.status_code == 429:
        raise PromError(f"Prometheus {prom} answered {describe(response)}", unreachable=True)
    try:
        body = response.json()
    except ValueError:
        raise PromError(f"Prometheus {prom} answered {describe(response)}", unreachable=True) from None
    if not isinstance(body, dict) or body.get("status") != "success":
        error = body if isinstance(body, dict) else {}
        raise PromError(f"Prometheus rejected {query!r}: {error.get('errorType', '')} {error.get('error', '')}".strip())
    data = body.get("data", {})
    return data.get("resultType"), data.get("result")


def series(http: httpx.Client, prom: str, query: str) -> list[tuple[dict[str, str], float]]:
    """(labels, value) per series of an instant query (PromError as instant_query's)."""
    kind, result = instant_query(http, prom, query)
    if kind == "scalar":
        return [({}, float(result[1]))]
    if kind == "vector":
        return [(found.get("metric", {}), float(found["value"][1])) for found in result]
    raise PromError(f"Prometheus query {query!r} returned a {kind}, expected an instant vector")


def prom_check(http: httpx.Client, prom: str | None, check: PromCheck, region: str) -> CheckEvidence:
    """One Prometheus check as evidence; only an unreachable Prometheus raises."""
    if prom is None:
        return CheckEvidence(check=check.name, passed=False, observed=f"region {region} has no prometheus URL")
    # str.replace, not format: PromQL is full of braces.
    query = check.query.replace("{region}", region)
    try:
        values = [value for _, value in series(http, prom, query)]
    except PromError as exc:
        if exc.unreachable:
            raise
        return CheckEvidence(check=check.name, passed=False, observed=str(exc))
    return _judge(check, values)


def _judge(check: PromCheck, values: list[float]) -> CheckEvidence:
    limits = []
    if check.min is not None:
        limits.append(f"min {check.min:g}")
    if check.max is not None:
        limits.append(f"max {check.max:g}")
    bounds = ", ".join(limits)
    real = [v for v in values if not math.isnan(v)]
    if not real:
        # No data (no series, or 0/0 in a region without traffic yet) violates no ceiling —
        # as an alert on `> max` would not fire — but proves no floor.
        return CheckEvidence(check=check.name, passed=check.min is None, observed=f"no data ({bounds})")
    bad = [
        v
        for v in real
        if (check.max is not None and v > check.max) or (check.min is not None and v < check.min)
    ]
    shown = ", ".join(f"{v:.4g}" for v in (bad or real)[:5])
    return CheckEvidence(check=check.name, passed=not bad, observed=f"{shown} ({bounds})")


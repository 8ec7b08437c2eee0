"""Requests sent to a region's own endpoint, and what came of them.

Warm-up sends the runbook's warm-up requests; an analysis that saw too little traffic sends
the same requests (or its health checks) to measure for itself. Both want each request's
outcome and latency, and the latencies' percentiles.
"""

from __future__ import annotations

import math
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from typing import Any

import httpx
from temporalio import activity

from drpilot.domain.runbook import Warmup


@dataclass(frozen=True)
class RegionProbe:
    """What a probe of one region reads: its endpoint at `base`, its Prometheus at `prom` (if any)."""

    http: httpx.Client
    base: str
    prom: str | None


@dataclass
class Outcome:
    ok: bool
    seconds: float
    observed: str  # status code and a little of the body, or the transport error
    # Seconds to the body's first byte: a streamed completion's first chunk, what a user
    # waits for before text appears (the whole answer for an unstreamed one).
    first_byte: float = 0.0


def describe(response: httpx.Response, body: str | None = None) -> str:
    text = (response.text if body is None else body).strip().replace("\n", " ")
    return f"{response.status_code} {text[:160]}".strip()


def error_text(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[max(1, math.ceil(len(ordered) * q / 100)) - 1]


def send_many(
    http: httpx.Client,
    base: str,
    warm: Warmup,
    count: int,
    concurrency: int,
    index: int,
    done: dict[str, Any],
    state: dict[str, Any] | None = None,
) -> list[Outcome]:
    """`count` of the request `warm`, `concurrency` at a time; heartbeats what is `done` (warm-up's
    finished entries), how far entry `index` got and the caller's own `state`."""
    outcomes: list[Outcome] = []
    timeout = warm.timeout.total_seconds()
    # Requests run in a pool; heartbeats only from this (the activity's) thread.
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="probe") as pool:
        futures = [pool.submit(_request, http, base, warm, timeout) for _ in range(count)]
        for future in as_completed(futures):
            outcomes.append(future.result())
            activity.heartbeat(
                {"entries": done, "current": {"entry": index, "sent": len(outcomes), "of": count}, **(state or {})}
            )
    return outcomes


def _request(http: httpx.Client, base: str, warm: Warmup, timeout: float) -> Outcome:
    started = time.monotonic()
    first_byte = None
    body = b""
    try:
        with http.stream(
            warm.method, base + warm.path, json=warm.body if warm.method == "POST" else None, timeout=timeout
        ) as response:
            for chunk in response.iter_bytes():
                if first_byte is None:
                    first_byte = time.monotonic() - started
                if len(body) < 4096:  # enough to describe it; the rest is read and dropped
                    body += chunk
    except httpx.HTTPError as exc:
        return Outcome(False, time.monotonic() - started, error_text(exc))
    seconds = time.monotonic() - started
    text = body.decode(response.encoding or "utf-8", errors="replace")
    return Outcome(response.is_success, seconds, describe(response, text), first_byte or seconds)

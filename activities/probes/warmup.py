"""Warm-up: the runbook's warm-up requests sent to a region before it takes traffic.

An entry without `ready_when` is counted: its `requests` are sent, and more than half of them
failing is retryable (pods may still be loading). An entry with `ready_when` is judged: it is
sent `concurrency` at a time until the p95 time to first byte of its latest `window` requests is
within the limit (a failed request counts as never answering), and fails, not retryable, when
that has not happened by its timeout. Entries an earlier attempt finished are in its heartbeat
details and not sent again; a judged entry an attempt left unfinished keeps its deadline.
"""

from __future__ import annotations

import math
import time
from collections import deque
from datetime import timedelta
from typing import Any

import httpx
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.contracts import ErrorType, WarmupInput, WarmupJudged, WarmupResult
from activities.probes.gate import version_paths, versions_ready
from activities.probes.sending import Outcome, ms, percentile, send_many
from drpilot.domain.durations import format_duration
from drpilot.domain.runbook import Warmup

# The ready_when timeout of a rehearsal is divided by its speed, never below this (or the
# timeout itself, when shorter): real requests to a real (or twin) server need real time.
MIN_JUDGED_SECONDS = 30.0
# A round in which requests failed (a loading model server answers 503 at once) is followed
# by this pause, so judging a server that is not up yet does not spin.
FAILED_ROUND_PAUSE = 0.5


def warm_up(http: httpx.Client, base: str, input: WarmupInput) -> WarmupResult:
    """Send every warm-up entry of the runbook to the region at `base`."""
    runbook, region = input.runbook, input.region
    details = _last_details()
    done: dict[str, dict[str, Any]] = dict(details.get("entries", {}))
    # The cold start's "model version ready" stage: the first moment of the warm-up the
    # versions answered ready (checked before each entry until seen, and once after the last).
    paths = version_paths(runbook, region)
    versions_at: float | None = details.get("versions_ready_at")

    def versions_seen() -> None:
        nonlocal versions_at
        if versions_at is None and versions_ready(http, base, paths):
            versions_at = time.time()

    for index, warm in enumerate(runbook.spec.warmup):
        key = str(index)
        if key in done:
            continue
        versions_seen()
        if warm.ready_when is not None:
            since = float((details.get("judging") or {}).get(key, time.time()))
            done[key] = _until_fast(http, base, input, warm, index, done, since, {"versions_ready_at": versions_at})
            activity.heartbeat({"entries": done, "versions_ready_at": versions_at})
            continue
        outcomes = send_many(http, base, warm, warm.requests, warm.concurrency, index, done, {"versions_ready_at": versions_at})
        failed = [o for o in outcomes if not o.ok]
        if len(failed) * 2 > len(outcomes):
            raise ApplicationError(
                f"warm-up of region {region} failed: {len(failed)} of {len(outcomes)} "
                f"{warm.method} {warm.path} requests to {base} failed "
                f"(last: {failed[-1].observed}); retrying, the model may still be loading",
                type=ErrorType.WARMUP_FAILED,
            )
        done[key] = {
            "requests": len(outcomes),
            "failures": len(failed),
            "latencies_ms": [ms(o.seconds) for o in outcomes if o.ok],
        }
        activity.heartbeat({"entries": done, "versions_ready_at": versions_at})
    versions_seen()
    latencies = [latency for entry in done.values() for latency in entry["latencies_ms"]]
    return WarmupResult(
        region=region,
        requests=sum(e["requests"] for e in done.values()),
        failures=sum(e["failures"] for e in done.values()),
        p50_ms=percentile(latencies, 50),
        p99_ms=percentile(latencies, 99),
        judged=[WarmupJudged(**e["judged"]) for e in done.values() if "judged" in e],
        versions_ready_at=versions_at,
        ended_at=time.time(),
    )


def _until_fast(
    http: httpx.Client, base: str, input: WarmupInput, warm: Warmup, index: int, done: dict[str, Any], since: float,
    keep: dict[str, Any],
) -> dict[str, Any]:
    """Entry `warm` sent until its latest requests are fast enough (its ready_when), judged
    since `since` (epoch seconds: a retried attempt keeps the first one's deadline); `keep`
    goes into the heartbeats as it is."""
    ready = warm.ready_when
    assert ready is not None
    limit = ready.p95_time_to_first_byte.total_seconds()
    timeout = ready.timeout.total_seconds()
    budget = max(timeout / input.speed, min(timeout, MIN_JUDGED_SECONDS))
    latest: deque[Outcome] = deque(maxlen=ready.window)
    sent = failures = 0
    state = {**keep, "judging": {str(index): since}}
    while True:
        outcomes = send_many(http, base, warm, warm.concurrency, warm.concurrency, index, done, state)
        latest.extend(outcomes)
        sent += len(outcomes)
        failures += sum(not o.ok for o in outcomes)
        p95 = percentile([o.first_byte if o.ok else math.inf for o in latest], 95)
        judged = {
            "request": f"{warm.method} {warm.path}", "requests": sent, "window": ready.window,
            "p95_ms": ms(p95), "limit_ms": ms(limit), "seconds": round(time.time() - since, 1),
        }
        if len(latest) == ready.window and p95 <= limit:
            return {
                "requests": sent, "failures": failures,
                "latencies_ms": [ms(o.seconds) for o in latest if o.ok], "judged": judged,
            }
        if time.time() - since >= budget:
            shown = f"{p95 * 1000:.0f}ms" if math.isfinite(p95) else "no answer (failed requests among them)"
            raise ApplicationError(
                f"warm-up of region {input.region} not fast enough after {format_duration(timedelta(seconds=round(budget, 1)))}: "
                f"{warm.method} {warm.path} p95 time to first byte {shown} over the latest {len(latest)} "
                f"of {sent} requests ({failures} failed), limit {ms(limit):.0f}ms "
                f"(warmup[{index}].ready_when; last: {outcomes[-1].observed})",
                judged,
                type=ErrorType.WARMUP_NOT_FAST,
                non_retryable=True,
            )
        if any(not o.ok for o in outcomes):
            time.sleep(FAILED_ROUND_PAUSE)


def _last_details() -> dict[str, Any]:
    details = activity.info().heartbeat_details
    if details and isinstance(details[-1], dict):
        return details[-1]
    return {}

"""Warm-up: the runbook's warm-up requests sent to a region before it takes traffic.

More than half of an entry's requests failing is retryable (pods may still be loading).
Entries an earlier attempt finished are in its heartbeat details and not sent again.
"""

from __future__ import annotations

from typing import Any

import httpx
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.contracts import ErrorType, WarmupInput, WarmupResult
from activities.probes.sending import ms, percentile, send_many


def warm_up(http: httpx.Client, base: str, input: WarmupInput) -> WarmupResult:
    """Send every warm-up entry of the runbook to the region at `base`."""
    runbook, region = input.runbook, input.region
    done: dict[str, dict[str, Any]] = dict(_last_details().get("entries", {}))
    for index, warm in enumerate(runbook.spec.warmup):
        key = str(index)
        if key in done:
            continue
        outcomes = send_many(http, base, warm, warm.requests, warm.concurrency, index, done)
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
        activity.heartbeat({"entries": done})
    latencies = [latency for entry in done.values() for latency in entry["latencies_ms"]]
    return WarmupResult(
        region=region,
        requests=sum(e["requests"] for e in done.values()),
        failures=sum(e["failures"] for e in done.values()),
        p50_ms=percentile(latencies, 50),
        p99_ms=percentile(latencies, 99),
    )


def _last_details() -> dict[str, Any]:
    details = activity.info().heartbeat_details
    if details and isinstance(details[-1], dict):
        return details[-1]
    return {}

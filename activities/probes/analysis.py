"""Analysis of a shift step: was the region's traffic during the bake healthy enough?

The region's error rate and p99 come from its Prometheus when the runbook names one, else
from its own /metrics sampled over a short window after the bake; too little traffic to
judge, and the analysis sends requests of its own. An unhealthy region is a result (the
workflow rolls back), never an error; it raises, retryably, only when it cannot measure.

Metrics contract: without Prometheus, and for the built-in error rate and p99 with it, the
region's model servers expose `inference_requests_total{region,model,code}` and the
histogram `inference_request_duration_seconds` (the sandbox's model servers do; in
production, recording rules can map other names onto these).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import httpx
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.contracts import (
    ANALYSIS_SAMPLE_MAX_SECONDS,
    ANALYSIS_SAMPLE_MIN_SECONDS,
    AnalyseInput,
    AnalyseResult,
    CheckEvidence,
    ErrorType,
)
from activities.probes.clock import sleep_heartbeating
from activities.probes.exposition import Sample, histogram_quantile, parse_metrics
from activities.probes.prometheus import PromError, prom_check, series
from activities.probes.sending import (
    Outcome,
    RegionProbe,
    describe,
    error_text,
    ms,
    percentile,
    send_many,
)
from drpilot.domain.measurement import analysis_needs, rehearsed_length
from drpilot.domain.runbook import Runbook, Warmup

# Analysis without Prometheus samples the region's /metrics over a short window after the
# bake, as long as the bake took here: at least SAMPLE_MIN real seconds (traffic arrives at
# its real rate at any rehearsal speed, so a few requests must land), at most SAMPLE_MAX
# seconds (so a long bake at speed 1 does not bake twice).
SAMPLE_MIN_SECONDS = ANALYSIS_SAMPLE_MIN_SECONDS
SAMPLE_MAX_SECONDS = ANALYSIS_SAMPLE_MAX_SECONDS
# Probe requests sent when the window had too little traffic to judge: fewer than 100
# cannot resolve the default 1% error limit or a p99 (of 20 requests, one slow or failed
# answer is the p99 and 5% errors), and a rehearsal's compressed bake often sees too little.
PROBE_REQUESTS_MIN = 100
PROBE_CONCURRENCY = 4
# Prometheus rate() needs two samples in its range: never ask for less than this.
PROM_RANGE_MIN_SECONDS = 5


@dataclass(frozen=True)
class Traffic:
    """A region's inference counters at one moment (or the difference of two moments)."""

    total: float
    errors: float
    buckets: dict[float, float]

    @classmethod
    def from_samples(cls, samples: list[Sample], region: str) -> Traffic:
        def ours(s: Sample) -> bool:
            return s.labels.get("region", region) == region

        total = errors = 0.0
        buckets: dict[float, float] = {}
        for s in samples:
            if not ours(s):
                continue
            if s.name == "inference_requests_total":
                total += s.value
                if s.labels.get("code", "").startswith("5"):
                    errors += s.value
            elif s.name == "inference_request_duration_seconds_bucket" and "le" in s.labels:
                le = float(s.labels["le"])
                buckets[le] = buckets.get(le, 0.0) + s.value
        return cls(total, errors, buckets)

    def since(self, before: Traffic) -> Traffic:
        if self.total < before.total:  # the server restarted: its counters began again
            return self
        return Traffic(
            self.total - before.total,
            self.errors - before.errors,
            {le: n - before.buckets.get(le, 0.0) for le, n in self.buckets.items()},
        )

    def p99(self) -> float:
        return histogram_quantile(0.99, self.buckets.items())


class Analysis(RegionProbe):
    """The analysis of one region."""

    def run(self, input: AnalyseInput) -> AnalyseResult:
        runbook, region, speed = input.runbook, input.region, input.speed
        shift = runbook.spec.traffic_shift
        rollback = shift.rollback
        prom = self.prom
        evidence: list[CheckEvidence] = []
        sampled = 0.0  # seconds spent sampling /metrics (Prometheus answers at once)
        held = 0.0  # seconds a rehearsal let the step run on for Prometheus's ranges
        try:
            if prom is not None:
                # The step runs on, in real time, until the Prometheus ranges hold only its own
                # traffic: the built-in queries' (at least PROM_RANGE_MIN) and the runbook's
                # analysis checks' (measurement.py); at speed 1 the bake already did.
                measured = max(
                    PROM_RANGE_MIN_SECONDS,
                    rehearsed_length(input.window_seconds * speed, speed, analysis_needs(runbook.spec)),
                )
                held = max(measured - input.window_seconds, 0.0)
                sleep_heartbeating(held, {"source": "prometheus", "waiting_for": "prometheus ranges", "seconds": held})
                traffic, source = self._traffic_from_prometheus(prom, region, input.window_seconds + held)
                evidence += [prom_check(self.http, prom, check, region) for check in shift.analysis]
            else:
                # The window is the bake already divided by the speed: sample that long (the
                # projection counts it at min(bake, SAMPLE_MAX) seconds, workflows/shift.py).
                sampled = max(min(input.window_seconds, SAMPLE_MAX_SECONDS), SAMPLE_MIN_SECONDS)
                traffic, source = self._traffic_from_metrics(region, sampled)
        except PromError as exc:
            # Not knowing is not the same as unhealthy: retry, and let the workflow's retry
            # policy decide when not knowing has lasted too long.
            raise ApplicationError(
                f"cannot analyse region {region}: {exc}", type=ErrorType.ANALYSIS_UNAVAILABLE
            ) from None
        enough = max(rollback.min_requests, 1)
        if traffic is None or traffic.total < enough:
            seen = "no metrics" if traffic is None else f"{traffic.total:g} requests"
            requests, error_rate, p99 = self._probe(runbook, max(rollback.min_requests, PROBE_REQUESTS_MIN))
            source = f"{source}; too little traffic ({seen} < {enough}), probed with {requests} requests"
        else:
            requests = round(traffic.total)
            error_rate = traffic.errors / traffic.total
            p99 = traffic.p99()
        # The runbook's limit as written at any speed: a rehearsal compresses the bake, not
        # what a request takes (the twin's latencies are not scaled either).
        limit = rollback.max_p99_latency.total_seconds()
        evidence[:0] = [
            CheckEvidence(
                check="error rate",
                passed=error_rate <= rollback.max_error_rate,
                observed=f"{error_rate:.2%} of {requests} requests (max {rollback.max_error_rate:.2%}; {source})",
            ),
            CheckEvidence(
                check="p99 latency",
                passed=not math.isnan(p99) and p99 <= limit,
                observed=("no answers" if math.isnan(p99) else f"{ms(p99)} ms")
                + f" (max {ms(limit)} ms; {source})",
            ),
        ]
        return AnalyseResult(
            region=region,
            healthy=all(e.passed for e in evidence),
            requests=requests,
            error_rate=round(error_rate, 6),
            p99_ms=ms(p99) if not math.isnan(p99) else 0.0,
            evidence=evidence,
            sample_seconds=sampled,
            held_seconds=round(held, 3),
        )

    def _traffic_from_prometheus(self, prom: str, region: str, window: float) -> tuple[Traffic, str]:
        span = f"{math.ceil(window)}s"
        selector = f'region="{region}"'

        def total(query: str) -> float:
            return sum(v for _, v in series(self.http, prom, query) if not math.isnan(v))

        requests = total(f"sum(increase(inference_requests_total{{{selector}}}[{span}]))")
        errors = total(f'sum(increase(inference_requests_total{{{selector},code=~"5.."}}[{span}]))')
        buckets = {
            float(labels["le"]): value
            for labels, value in series(
                self.http, prom, f"sum by (le) (increase(inference_request_duration_seconds_bucket{{{selector}}}[{span}]))"
            )
            if "le" in labels
        }
        activity.heartbeat({"source": "prometheus", "requests": requests})
        return Traffic(requests, errors, buckets), f"Prometheus over {span}"

    def _traffic_from_metrics(self, region: str, sample: float) -> tuple[Traffic | None, str]:
        url = self.base + "/metrics"
        try:
            before = self._scrape(url, region)
            sleep_heartbeating(sample, {"source": "metrics", "url": url, "sample_seconds": sample})
            after = self._scrape(url, region)
        except ScrapeError as exc:
            return None, str(exc)
        return after.since(before), f"{url} over {sample:.3g}s"

    def _scrape(self, url: str, region: str) -> Traffic:
        try:
            response = self.http.get(url, timeout=10.0)
        except httpx.HTTPError as exc:
            raise ScrapeError(f"{url} unreachable: {error_text(exc)}") from None
        if not response.is_success:
            raise ScrapeError(f"{url} answered {describe(response)}")
        try:
            return Traffic.from_samples(parse_metrics(response.text), region)
        except ValueError as exc:
            raise ScrapeError(f"{url}: {exc}") from None

    def _probe(self, runbook: Runbook, count: int) -> tuple[int, float, float]:
        """Active requests (the runbook's warm-up requests, else its HTTP health checks):
        error rate over all of them, p99 of the answered ones, in seconds."""
        requests = list(runbook.spec.warmup) or [
            Warmup(path=check.path, method="GET", requests=1) for check in runbook.spec.health.http
        ]
        per = -(-count // len(requests))
        outcomes: list[Outcome] = []
        for index, warm in enumerate(requests):
            outcomes += send_many(self.http, self.base, warm, per, PROBE_CONCURRENCY, index, {})
        failed = sum(1 for o in outcomes if not o.ok)
        latencies = [o.seconds for o in outcomes if o.ok]
        p99 = percentile(latencies, 99) if latencies else math.nan
        return len(outcomes), failed / len(outcomes), p99


class ScrapeError(Exception):
    """The region's /metrics could not be read: the analysis probes instead."""

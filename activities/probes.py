"""HTTP probes of a region: warm-up, the health gate, and traffic analysis for a shift step.

All three talk to the region's own endpoint (the runbook's `regions.R.endpoint`, bypassing
global DNS) and, when the runbook gives one, the region's Prometheus. In the sandbox both
URLs are rewritten to loopback through `settings.providers.endpoint_map` / `prometheus_map`.

Errors say what the workflow should do:
- warm-up with more than half its requests failing: retryable (pods may still be loading);
- a health gate that does not pass in time returns passed=False with the evidence per check
  and a summary naming the region (a verdict, not an error: the workflow decides);
- analysis never raises for an unhealthy region (that is a result, and the workflow rolls
  back); it raises, retryably, only when it cannot measure (Prometheus unreachable).

Metrics contract: without Prometheus, and for the built-in error rate and p99 with it, the
region's model servers expose `inference_requests_total{region,model,code}` and the
histogram `inference_request_duration_seconds` (the sandbox's model servers do; in
production, recording rules can map other names onto these).
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from typing import Any, Self
from urllib.parse import quote

import httpx
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.contracts import (
    ANALYSIS_SAMPLE_MAX_SECONDS,
    ANALYSIS_SAMPLE_MIN_SECONDS,
    PROBES_ANALYSE,
    PROBES_HEALTH,
    PROBES_WARMUP,
    AnalyseInput,
    AnalyseResult,
    CheckEvidence,
    ErrorType,
    HealthInput,
    HealthResult,
    ScaledWait,
    WarmupInput,
    WarmupResult,
)
from activities.waits import slept
from drpilot.domain.runbook import PromCheck, Runbook, Warmup
from drpilot.domain.settings import Settings

# Analysis without Prometheus samples the region's /metrics over a short window after the
# bake: at least SAMPLE_MIN real seconds (traffic arrives at its real rate at any rehearsal
# speed, so a few requests must land), at most SAMPLE_MAX simulated seconds (so a step does
# not bake twice; divided by the speed, it is a wait).
SAMPLE_MIN_SECONDS = ANALYSIS_SAMPLE_MIN_SECONDS
SAMPLE_MAX_SECONDS = ANALYSIS_SAMPLE_MAX_SECONDS
# Probe requests sent when the window had too little traffic to judge: fewer than 100
# cannot resolve the default 1% error limit or a p99 (of 20 requests, one slow or failed
# answer is the p99 and 5% errors), and a rehearsal's compressed bake often sees too little.
PROBE_REQUESTS_MIN = 100
PROBE_CONCURRENCY = 4
# A rehearsal's health gate counts requests at their real duration (see _RehearsalClock);
# in real time it still ends this long after its scaled timeout at the latest, inside the
# activity's start-to-close timeout (the scaled timeout + 60 s, workflows/calls.py).
GATE_REAL_SLACK_SECONDS = 30.0
# Prometheus rate() needs two samples in its range: never ask for less than this.
PROM_RANGE_MIN_SECONDS = 5
HEARTBEAT_EVERY_SECONDS = 1.0
# Per request of the model-version readiness check (the runbook's HTTP checks set their own).
VERSION_CHECK_TIMEOUT_SECONDS = 5.0


# ------------------------------------------------------------------ Prometheus text format
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


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[max(1, math.ceil(len(ordered) * q / 100)) - 1]


@dataclass(frozen=True)
class _Traffic:
    """A region's inference counters at one moment (or the difference of two moments)."""

    total: float
    errors: float
    buckets: dict[float, float]

    @classmethod
    def from_samples(cls, samples: list[Sample], region: str) -> _Traffic:
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

    def since(self, before: _Traffic) -> _Traffic:
        if self.total < before.total:  # the server restarted: its counters began again
            return self
        return _Traffic(
            self.total - before.total,
            self.errors - before.errors,
            {le: n - before.buckets.get(le, 0.0) for le, n in self.buckets.items()},
        )

    def p99(self) -> float:
        return histogram_quantile(0.99, self.buckets.items())


class _RehearsalClock:
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

    def real(self) -> float:
        return time.monotonic() - self.started

    def elapsed(self) -> float:
        return self.real() - self._waited_real + self._waited_simulated

    def wait(self, simulated: float, details: Any) -> None:
        simulated = max(simulated, 0.0)
        started = time.monotonic()
        _wait(simulated / self.speed, details)
        self._waited_real += time.monotonic() - started
        self._waited_simulated += simulated

    def waits(self) -> list[ScaledWait]:
        """The pauses between rounds, for a rehearsal's RTO projection."""
        return slept("health-interval", self.speed, self._waited_real, self._waited_simulated)


# ------------------------------------------------------------------------------ results
@dataclass
class _Outcome:
    ok: bool
    seconds: float
    observed: str  # status code and a little of the body, or the transport error


def _describe(response: httpx.Response) -> str:
    body = response.text.strip().replace("\n", " ")
    return f"{response.status_code} {body[:160]}".strip()


def _error_text(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


class PromError(Exception):
    """Prometheus gave no answer to a query: `unreachable` when it could not answer (worth a
    retry), else it rejected the query (no retry changes that)."""

    def __init__(self, message: str, *, unreachable: bool = False):
        super().__init__(message)
        self.unreachable = unreachable


def instant_query(http: httpx.Client, prom: str, query: str) -> tuple[str, Any]:
    """One instant query (`GET /api/v1/query`): its resultType and result, as Prometheus
    sent them. The health gate, the shift analysis and a drill's blocking queries all ask
    Prometheus this way."""
    try:
        response = http.get(f"{prom}/api/v1/query", params={"query": query}, timeout=10.0)
    except httpx.HTTPError as exc:
        raise PromError(f"Prometheus {prom} unreachable: {_error_text(exc)}", unreachable=True) from None
    if response.status_code >= 500 or response.status_code == 429:
        raise PromError(f"Prometheus {prom} answered {_describe(response)}", unreachable=True)
    try:
        body = response.json()
    except ValueError:
        raise PromError(f"Prometheus {prom} answered {_describe(response)}", unreachable=True) from None
    if not isinstance(body, dict) or body.get("status") != "success":
        error = body if isinstance(body, dict) else {}
        raise PromError(f"Prometheus rejected {query!r}: {error.get('errorType', '')} {error.get('error', '')}".strip())
    data = body.get("data", {})
    return data.get("resultType"), data.get("result")


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


class ProbeActivities:
    def __init__(
        self,
        http: httpx.Client,
        *,
        endpoint_map: Mapping[str, str] | None = None,
        prometheus_map: Mapping[str, str] | None = None,
    ):
        self.http = http
        self.endpoint_map = {k.rstrip("/"): v.rstrip("/") for k, v in (endpoint_map or {}).items()}
        self.prometheus_map = {k.rstrip("/"): v.rstrip("/") for k, v in (prometheus_map or {}).items()}

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        return cls(
            httpx.Client(timeout=30.0, follow_redirects=True),
            endpoint_map=settings.providers.endpoint_map,
            prometheus_map=settings.providers.prometheus_map,
        )

    def all(self) -> list[Callable[..., Any]]:
        return [self.warmup, self.health_gate, self.analyse]

    # ------------------------------------------------------------------ where to dial
    def endpoint(self, runbook: Runbook, region: str) -> str:
        url = _region(runbook, region).endpoint.rstrip("/")
        return self.endpoint_map.get(url, url)

    def prometheus(self, runbook: Runbook, region: str) -> str | None:
        url = _region(runbook, region).prometheus
        if url is None:
            return None
        url = url.rstrip("/")
        return self.prometheus_map.get(url, url)

    # ------------------------------------------------------------------ warm-up
    @activity.defn(name=PROBES_WARMUP)
    def warmup(self, input: WarmupInput) -> WarmupResult:
        runbook, region = input.runbook, input.region
        base = self.endpoint(runbook, region)
        # Entries finished by an earlier attempt are not sent again (heartbeat details).
        done: dict[str, dict[str, Any]] = dict(_last_details().get("entries", {}))
        for index, warm in enumerate(runbook.spec.warmup):
            key = str(index)
            if key in done:
                continue
            outcomes = self._send_many(base, warm, warm.requests, warm.concurrency, index, done)
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
                "latencies_ms": [_ms(o.seconds) for o in outcomes if o.ok],
            }
            activity.heartbeat({"entries": done})
        latencies = [ms for entry in done.values() for ms in entry["latencies_ms"]]
        return WarmupResult(
            region=region,
            requests=sum(e["requests"] for e in done.values()),
            failures=sum(e["failures"] for e in done.values()),
            p50_ms=percentile(latencies, 50),
            p99_ms=percentile(latencies, 99),
        )

    def _send_many(
        self,
        base: str,
        warm: Warmup,
        count: int,
        concurrency: int,
        index: int,
        done: dict[str, Any],
    ) -> list[_Outcome]:
        outcomes: list[_Outcome] = []
        timeout = warm.timeout.total_seconds()
        # Requests run in a pool; heartbeats only from this (the activity's) thread.
        with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="probe") as pool:
            futures = [pool.submit(self._request, base, warm, timeout) for _ in range(count)]
            for future in as_completed(futures):
                outcomes.append(future.result())
                activity.heartbeat(
                    {"entries": done, "current": {"entry": index, "sent": len(outcomes), "of": count}}
                )
        return outcomes

    def _request(self, base: str, warm: Warmup, timeout: float) -> _Outcome:
        started = time.monotonic()
        try:
            if warm.method == "POST":
                response = self.http.post(base + warm.path, json=warm.body, timeout=timeout)
            else:
                response = self.http.get(base + warm.path, timeout=timeout)
        except httpx.HTTPError as exc:
            return _Outcome(False, time.monotonic() - started, _error_text(exc))
        return _Outcome(response.is_success, time.monotonic() - started, _describe(response))

    # ------------------------------------------------------------------ health gate
    @activity.defn(name=PROBES_HEALTH)
    def health_gate(self, input: HealthInput) -> HealthResult:
        runbook, region, speed = input.runbook, input.region, input.speed
        health = runbook.spec.health
        interval = health.interval.total_seconds()  # simulated seconds, as the timeout
        timeout = health.timeout.total_seconds()
        clock = _RehearsalClock(speed)
        real_limit = timeout / speed + (GATE_REAL_SLACK_SECONDS if speed != 1 else 0.0)
        rounds = consecutive = 0
        needed = input.rounds or health.consecutive
        last_failure: dict[str, CheckEvidence] = {}
        while True:
            round_started = clock.elapsed()
            # A probe never outlives the gate by more than a moment.
            left = min(timeout - round_started, real_limit - clock.real())
            evidence = self._health_round(runbook, region, left)
            rounds += 1
            consecutive = consecutive + 1 if all(e.passed for e in evidence) else 0
            last_failure.update({e.check: e for e in evidence if not e.passed})
            details = {
                "round": rounds,
                "consecutive": consecutive,
                "needed": needed,
                "evidence": [e.model_dump() for e in evidence],
            }
            activity.heartbeat(details)
            if consecutive >= needed:
                return HealthResult(
                    region=region,
                    passed=True,
                    rounds=rounds,
                    consecutive=consecutive,
                    seconds=round(clock.real(), 3),
                    evidence=evidence,
                    waits=clock.waits(),
                )
            next_round = round_started + interval
            # A short check (input.rounds) gets no more rounds than it needs passing.
            short = input.rounds is not None and rounds >= input.rounds
            if short or next_round > timeout or clock.real() + interval / speed > real_limit:
                failing = "; ".join(f"{e.check}: {e.observed}" for e in last_failure.values())
                rehearsal = f" (rehearsal at speed {speed:g}: waits ÷{speed:g}, requests at their real time)"
                summary = (
                    f"region {region} did not pass its health gate: {needed} consecutive "
                    f"passing rounds needed within {timeout:g}s"
                    f"{rehearsal if speed != 1 else ''}, got {consecutive} "
                    f"after {rounds} rounds. Last failing evidence: {failing}. Fix the region "
                    f"(pods, model artifacts) or raise spec.health.timeout if it is only slow."
                )
                activity.logger.warning(summary)
                # A failed gate is a verdict, not an error: the workflow decides (retrying
                # the activity would only repeat the same wait).
                return HealthResult(
                    region=region,
                    passed=False,
                    rounds=rounds,
                    consecutive=consecutive,
                    seconds=round(clock.real(), 3),
                    evidence=evidence,
                    summary=summary,
                    waits=clock.waits(),
                )
            clock.wait(next_round - clock.elapsed(), details)

    def _health_round(self, runbook: Runbook, region: str, left: float) -> list[CheckEvidence]:
        """One round of checks; `left` is the gate's time left, which requests spend at
        their real duration."""
        base = self.endpoint(runbook, region)
        health = runbook.spec.health
        deadline = time.monotonic() + left
        evidence = []
        for check in health.http:
            evidence.append(
                self._status_check(base + check.path, f"GET {check.path}", check.expect, check.timeout.total_seconds(), deadline)
            )
        for model in runbook.spec.models:
            if region not in model.artifacts:
                continue
            # KServe v2 model-version readiness: the version the runbook names is the one
            # the pods loaded (pods that started before the artifacts were right serve
            # without it). 200 is ready; 404 is "not loaded"; 503 "server not ready".
            path = f"/v2/models/{quote(model.name, safe='')}/versions/{quote(model.version, safe='')}/ready"
            evidence.append(self._status_check(base + path, f"GET {path}", 200, VERSION_CHECK_TIMEOUT_SECONDS, deadline))
        if health.prometheus:
            prom = self.prometheus(runbook, region)
            for check in health.prometheus:
                try:
                    evidence.append(self._prom_check(prom, check, region))
                except PromError as exc:  # the gate keeps polling; the timeout decides
                    evidence.append(CheckEvidence(check=check.name, passed=False, observed=str(exc)))
        return evidence

    def _status_check(self, url: str, name: str, expect: int, per_request: float, deadline: float) -> CheckEvidence:
        # A probe never outlives the gate by more than a moment.
        timeout = min(per_request, max(deadline - time.monotonic(), 0.5))
        try:
            response = self.http.get(url, timeout=timeout)
        except httpx.HTTPError as exc:
            return CheckEvidence(check=name, passed=False, observed=_error_text(exc))
        ok = response.status_code == expect
        return CheckEvidence(check=name, passed=ok, observed=_describe(response) + ("" if ok else f" (expected {expect})"))

    # ------------------------------------------------------------------ Prometheus
    def _query(self, prom: str, query: str) -> list[tuple[dict[str, str], float]]:
        """(labels, value) per series of an instant query (PromError as instant_query's)."""
        kind, result = instant_query(self.http, prom, query)
        if kind == "scalar":
            return [({}, float(result[1]))]
        if kind == "vector":
            return [(series.get("metric", {}), float(series["value"][1])) for series in result]
        raise PromError(f"Prometheus query {query!r} returned a {kind}, expected an instant vector")

    def _prom_check(self, prom: str | None, check: PromCheck, region: str) -> CheckEvidence:
        """One Prometheus check as evidence; only an unreachable Prometheus raises."""
        if prom is None:
            return CheckEvidence(check=check.name, passed=False, observed=f"region {region} has no prometheus URL")
        # str.replace, not format: PromQL is full of braces.
        query = check.query.replace("{region}", region)
        try:
            values = [value for _, value in self._query(prom, query)]
        except PromError as exc:
            if exc.unreachable:
                raise
            return CheckEvidence(check=check.name, passed=False, observed=str(exc))
        return _judge(check, values)

    # ------------------------------------------------------------------ analysis
    @activity.defn(name=PROBES_ANALYSE)
    def analyse(self, input: AnalyseInput) -> AnalyseResult:
        runbook, region, speed = input.runbook, input.region, input.speed
        shift = runbook.spec.traffic_shift
        rollback = shift.rollback
        prom = self.prometheus(runbook, region)
        evidence: list[CheckEvidence] = []
        sampled = 0.0  # seconds spent sampling /metrics (Prometheus answers at once)
        try:
            if prom is not None:
                traffic, source = self._traffic_from_prometheus(prom, region, input.window_seconds)
                evidence += [self._prom_check(prom, check, region) for check in shift.analysis]
            else:
                sampled = max(min(input.window_seconds, SAMPLE_MAX_SECONDS / speed), SAMPLE_MIN_SECONDS)
                traffic, source = self._traffic_from_metrics(runbook, region, sampled)
        except PromError as exc:
            # Not knowing is not the same as unhealthy: retry, and let the workflow's retry
            # policy decide when not knowing has lasted too long.
            raise ApplicationError(
                f"cannot analyse region {region}: {exc}", type=ErrorType.ANALYSIS_UNAVAILABLE
            ) from None
        enough = max(rollback.min_requests, 1)
        if traffic is None or traffic.total < enough:
            seen = "no metrics" if traffic is None else f"{traffic.total:g} requests"
            requests, error_rate, p99 = self._probe(runbook, region, max(rollback.min_requests, PROBE_REQUESTS_MIN))
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
                observed=("no answers" if math.isnan(p99) else f"{_ms(p99)} ms")
                + f" (max {_ms(limit)} ms; {source})",
            ),
        ]
        return AnalyseResult(
            region=region,
            healthy=all(e.passed for e in evidence),
            requests=requests,
            error_rate=round(error_rate, 6),
            p99_ms=_ms(p99) if not math.isnan(p99) else 0.0,
            evidence=evidence,
            sample_seconds=sampled,
        )

    def _traffic_from_prometheus(self, prom: str, region: str, window: float) -> tuple[_Traffic, str]:
        if window < PROM_RANGE_MIN_SECONDS:
            # A rehearsal's compressed bake is shorter than the shortest range rate() can use:
            # let the step run on until that range holds only this step's traffic, not the
            # previous step's at its other weight.
            _wait(PROM_RANGE_MIN_SECONDS - window, {"source": "prometheus", "waiting_for_range": True})
        span = f"{max(math.ceil(window), PROM_RANGE_MIN_SECONDS)}s"
        selector = f'region="{region}"'

        def total(query: str) -> float:
            return sum(v for _, v in self._query(prom, query) if not math.isnan(v))

        requests = total(f"sum(increase(inference_requests_total{{{selector}}}[{span}]))")
        errors = total(f'sum(increase(inference_requests_total{{{selector},code=~"5.."}}[{span}]))')
        buckets = {
            float(labels["le"]): value
            for labels, value in self._query(
                prom, f"sum by (le) (increase(inference_request_duration_seconds_bucket{{{selector}}}[{span}]))"
            )
            if "le" in labels
        }
        activity.heartbeat({"source": "prometheus", "requests": requests})
        return _Traffic(requests, errors, buckets), f"Prometheus over {span}"

    def _traffic_from_metrics(self, runbook: Runbook, region: str, sample: float) -> tuple[_Traffic | None, str]:
        url = self.endpoint(runbook, region) + "/metrics"
        try:
            before = self._scrape(url, region)
            _wait(sample, {"source": "metrics", "url": url, "sample_seconds": sample})
            after = self._scrape(url, region)
        except _ScrapeError as exc:
            return None, str(exc)
        return after.since(before), f"{url} over {sample:.3g}s"

    def _scrape(self, url: str, region: str) -> _Traffic:
        try:
            response = self.http.get(url, timeout=10.0)
        except httpx.HTTPError as exc:
            raise _ScrapeError(f"{url} unreachable: {_error_text(exc)}") from None
        if not response.is_success:
            raise _ScrapeError(f"{url} answered {_describe(response)}")
        try:
            return _Traffic.from_samples(parse_metrics(response.text), region)
        except ValueError as exc:
            raise _ScrapeError(f"{url}: {exc}") from None

    def _probe(self, runbook: Runbook, region: str, count: int) -> tuple[int, float, float]:
        """Active requests (the runbook's warm-up requests, else its HTTP health checks):
        error rate over all of them, p99 of the answered ones, in seconds."""
        base = self.endpoint(runbook, region)
        requests = list(runbook.spec.warmup) or [
            Warmup(path=check.path, method="GET", requests=1) for check in runbook.spec.health.http
        ]
        per = -(-count // len(requests))
        outcomes: list[_Outcome] = []
        for index, warm in enumerate(requests):
            outcomes += self._send_many(base, warm, per, PROBE_CONCURRENCY, index, {})
        failed = sum(1 for o in outcomes if not o.ok)
        latencies = [o.seconds for o in outcomes if o.ok]
        p99 = percentile(latencies, 99) if latencies else math.nan
        return len(outcomes), failed / len(outcomes), p99


class _ScrapeError(Exception):
    pass


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


def _region(runbook: Runbook, region: str):
    try:
        return runbook.spec.regions[region]
    except KeyError:
        raise ApplicationError(
            f"region {region!r} is not in runbook {runbook.name}; its regions are "
            f"{', '.join(sorted(runbook.spec.regions))}",
            type=ErrorType.UNKNOWN_REGION,
            non_retryable=True,
        ) from None


def _last_details() -> dict[str, Any]:
    details = activity.info().heartbeat_details
    if details and isinstance(details[-1], dict):
        return details[-1]
    return {}


def _wait(seconds: float, details: Any) -> None:
    """Sleep, heartbeating, so a long interval does not look like a dead worker."""
    end = time.monotonic() + max(seconds, 0.0)
    while (left := end - time.monotonic()) > 0:
        time.sleep(min(left, HEARTBEAT_EVERY_SECONDS))
        activity.heartbeat(details)

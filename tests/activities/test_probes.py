"""Probe activities against the twin's model servers (and a real Prometheus when installed),
run in Temporal's ActivityEnvironment; real HTTP on loopback, nothing mocked."""

from __future__ import annotations

import copy
import math
import re
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import httpx
import pytest
import yaml
from drpilot_twin.faults import ColdModel, ErrorRamp, FaultBoard
from drpilot_twin.model_server import ModelServer
from drpilot_twin.users import TrafficGenerator
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.contracts import AnalyseInput, AnalyseResult, HealthInput, WarmupInput
from activities.probes.activities import ProbeActivities
from activities.probes.exposition import histogram_quantile, parse_metrics
from activities.probes.sending import percentile
from drpilot.domain.runbook import Runbook
from drpilot.domain.settings import ProviderSettings, Settings
from drpilot.frontdoor.ports import free_loopback_port
from tests.support.paths import RUNBOOKS

SPEED = 20.0
EAST, WEST = "us-east-1", "us-west-2"


def merge(base: dict, changes: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in changes.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def make_runbook(**spec_changes) -> Runbook:
    data = yaml.safe_load((RUNBOOKS / "llm-inference.yaml").read_text())
    data["spec"] = merge(data["spec"], spec_changes)
    return Runbook.model_validate(data)


@dataclass
class World:
    board: FaultBoard
    servers: dict[str, ModelServer]
    weights: dict[str, int]
    ready: dict[str, bool | tuple[bool, str]]
    probes: ProbeActivities
    heartbeats: list = field(default_factory=list)

    def env(self, heartbeat_details: list | None = None) -> ActivityEnvironment:
        env = ActivityEnvironment()
        if heartbeat_details is not None:
            env.info = replace(env.info, heartbeat_details=heartbeat_details)
        env.on_heartbeat = lambda *details: self.heartbeats.append(details[0] if details else None)
        return env

    def traffic(self, rate: float = 80) -> TrafficGenerator:
        endpoints = {r: s.url for r, s in self.servers.items()}
        return TrafficGenerator.for_runbook(
            make_runbook(), endpoints, lambda: dict(self.weights), rate_per_second=rate, refresh_seconds=0.05
        )


def start_world(prometheus_map: dict[str, str] | None = None) -> World:
    board = FaultBoard()
    weights = {EAST: 50, WEST: 50}
    ready: dict[str, bool | tuple[bool, str]] = {EAST: True, WEST: True}
    servers = {
        region: ModelServer(
            region,
            board,
            readiness=lambda r=region: ready[r],
            weight=lambda r=region: weights[r],
            models=["llm-7b", "embed-small"],
            cache_seconds=0,
        )
        for region in (EAST, WEST)
    }
    for server in servers.values():
        server.start()
    runbook = make_runbook()
    settings = Settings(
        providers=ProviderSettings(
            endpoint_map={runbook.regions[r].endpoint: s.url for r, s in servers.items()},
            prometheus_map=prometheus_map or {},
        )
    )
    probes = ProbeActivities.from_settings(settings)
    probes.http = httpx.Client(trust_env=False, timeout=10)  # a proxy in the environment must not matter
    return World(board, servers, weights, ready, probes)


def stop_world(world: World) -> None:
    world.probes.http.close()
    for server in world.servers.values():
        server.stop()


@pytest.fixture
def world():
    w = start_world()
    yield w
    stop_world(w)


def wait_until(condition, timeout: float = 15.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what} not met within {timeout}s"
        time.sleep(0.05)


# ------------------------------------------------------------------------ pure parts
def test_parse_metrics_reads_labels_escapes_and_special_values():
    text = (
        "# HELP x y\n# TYPE a counter\n"
        'a{region="us-east-1",path="/v2/\\"q\\"",le="+Inf"} 3 1700000000000\n'
        "b 1.5e3\n"
        'c{x="NaN"} NaN\n'
    )
    samples = parse_metrics(text)
    assert samples[0].labels == {"region": "us-east-1", "path": '/v2/"q"', "le": "+Inf"}
    assert samples[0].value == 3 and samples[1].value == 1500 and math.isnan(samples[2].value)
    with pytest.raises(ValueError, match="line 2"):
        parse_metrics("ok 1\nnot a sample line at all\n")


def test_histogram_quantile_interpolates_like_prometheus():
    buckets = [(0.1, 50), (0.5, 90), (1.0, 100), (math.inf, 100)]
    assert histogram_quantile(0.5, buckets) == pytest.approx(0.1)
    assert histogram_quantile(0.7, buckets) == pytest.approx(0.3)
    assert histogram_quantile(0.99, [(0.1, 0), (math.inf, 10)]) == 0.1  # beyond the last finite bound
    assert math.isnan(histogram_quantile(0.99, [(0.1, 0), (math.inf, 0)]))
    assert percentile([5, 1, 3, 2, 4], 50) == 3 and percentile([], 99) == 0.0


# ------------------------------------------------------------------------ warm-up
def test_warmup_sends_every_request_and_reports_percentiles(world):
    world.board.update(extra_latency_seconds={WEST: 0.05})
    result = world.env().run(world.probes.warmup, WarmupInput(runbook=make_runbook(), region=WEST))
    assert (result.region, result.requests, result.failures) == (WEST, 30, 0)
    assert 50 <= result.p50_ms <= result.p99_ms
    assert world.servers[WEST].counts() == {("llm-7b", 200): 20, ("embed-small", 200): 10}
    assert world.servers[EAST].inference_requests == 0
    assert world.heartbeats and world.heartbeats[-1]["entries"]["1"]["requests"] == 10


def test_warmup_tolerates_a_minority_of_failures_and_counts_them(world):
    world.board.update(error_ramp={WEST: ErrorRamp(at_weight=0, error_rate=0.25)})
    result = world.env().run(world.probes.warmup, WarmupInput(runbook=make_runbook(), region=WEST))
    assert result.requests == 30
    assert result.failures == 7  # 5 of 20, then 2 of the next 10: the ramp is deterministic


def test_warmup_with_most_requests_failing_is_retryable_and_names_the_region(world):
    world.ready[WEST] = (False, "0/6 pods ready")
    with pytest.raises(ApplicationError) as caught:
        world.env().run(world.probes.warmup, WarmupInput(runbook=make_runbook(), region=WEST))
    error = caught.value
    assert not error.non_retryable
    assert "us-west-2" in error.message and "POST /v2/models/llm-7b/infer" in error.message
    assert "503" in error.message and "0/6 pods ready" in error.message


def test_warmup_resumes_after_the_entries_an_earlier_attempt_finished(world):
    earlier = {"entries": {"0": {"requests": 20, "failures": 1, "latencies_ms": [4.0] * 19}}}
    result = world.env([earlier]).run(world.probes.warmup, WarmupInput(runbook=make_runbook(), region=WEST))
    assert world.servers[WEST].counts() == {("embed-small", 200): 10}
    assert (result.requests, result.failures) == (30, 1)


def judged_runbook(limit: str, window: int, timeout: str = "10m", per_request: str = "5s") -> Runbook:
    stream = {
        "path": "/v2/models/llm-7b/generate_stream", "body": {"text_input": "warm", "parameters": {"stream": True}},
        "concurrency": 4, "timeout": per_request,
        "ready_when": {"p95_time_to_first_byte": limit, "window": window, "timeout": timeout},
    }
    return make_runbook(warmup=[stream])


def test_warmup_ready_when_waits_out_a_cold_model_judging_the_streams_first_byte(world):
    # +0.4 s on the first request, none by the 24th: fast (< 120 ms to the first event) from
    # about the 17th. A whole answer takes over 150 ms (events 50 ms apart), so the limit
    # passes only on the time to first byte.
    world.board.update(cold_model={WEST: ColdModel(seconds=0.4, requests=24)})
    result = world.env().run(world.probes.warmup, WarmupInput(runbook=judged_runbook("120ms", 8, timeout="15s"), region=WEST))
    [judged] = result.judged
    assert judged.request == "POST /v2/models/llm-7b/generate_stream"
    assert judged.p95_ms <= 120 and judged.limit_ms == 120 and judged.window == 8
    assert 20 <= judged.requests == result.requests == world.servers[WEST].inference_requests <= 40
    assert result.p50_ms >= 150  # the whole streamed answers
    assert max(r.seconds for r in world.servers[WEST].records) >= 0.3  # the cold ones were slow
    # The cold start's last two stages: the versions answered ready before the first request.
    assert result.versions_ready_at is not None and result.ended_at is not None
    assert result.ended_at - result.versions_ready_at >= judged.seconds - 0.5


def test_warmup_ready_when_fails_at_its_timeout_with_the_evidence(world):
    world.board.update(cold_model={WEST: ColdModel(seconds=0.6, requests=100_000)})
    runbook = judged_runbook("200ms", 4, timeout="2s", per_request="1500ms")
    with pytest.raises(ApplicationError) as caught:
        world.env().run(world.probes.warmup, WarmupInput(runbook=runbook, region=WEST))
    error = caught.value
    assert error.non_retryable and error.type == "WarmupNotFast"
    assert re.match(
        r"warm-up of region us-west-2 not fast enough after 2s: POST /v2/models/llm-7b/generate_stream "
        r"p95 time to first byte \d+ms over the latest 4 of \d+ requests \(0 failed\), limit 200ms", error.message
    ), error.message
    assert error.details[0]["p95_ms"] >= 600 and error.details[0]["requests"] >= 8


def test_unknown_region_is_not_retryable(world):
    with pytest.raises(ApplicationError, match="'eu-north-1' is not in runbook llm-inference") as caught:
        world.env().run(world.probes.warmup, WarmupInput(runbook=make_runbook(), region="eu-north-1"))
    assert caught.value.non_retryable


# ------------------------------------------------------------------------ health gate
def test_health_gate_passes_after_the_region_becomes_ready_mid_gate(world):
    world.ready[WEST] = (False, "model artifacts missing")
    flip = threading.Timer(0.8, lambda: world.ready.__setitem__(WEST, True))
    flip.start()
    try:
        result = world.env().run(
            world.probes.health_gate, HealthInput(runbook=make_runbook(), region=WEST, speed=SPEED)
        )
    finally:
        flip.cancel()
    assert result.passed and result.consecutive == 3
    assert result.rounds >= 5  # some rounds failed before the flip
    assert {e.check for e in result.evidence} == {
        "GET /v2/health/ready",
        "GET /v2/health/live",
        # Each model's version, as the runbook names it (KServe v2 model-version ready).
        "GET /v2/models/llm-7b/versions/2024-01-15/ready",
        "GET /v2/models/embed-small/versions/2024-02-01/ready",
    }
    assert all(e.passed for e in result.evidence)
    rounds = [h for h in world.heartbeats if h and "round" in h]
    assert not all(e["passed"] for e in rounds[0]["evidence"])
    assert "model artifacts missing" in str(rounds[0]["evidence"])


def test_health_gate_fails_with_evidence_within_the_scaled_timeout(world):
    world.ready[WEST] = (False, "0/6 pods ready in ml-serving/inference-service")
    runbook = make_runbook()
    started = time.monotonic()
    result = world.env().run(world.probes.health_gate, HealthInput(runbook=runbook, region=WEST, speed=SPEED))
    elapsed = time.monotonic() - started
    scaled_timeout = runbook.spec.health.timeout.total_seconds() / SPEED
    assert scaled_timeout - 0.5 <= elapsed <= scaled_timeout + 2.0
    # A failed gate is a verdict the workflow acts on, not an activity error.
    assert not result.passed and result.consecutive == 0 and result.rounds >= 10
    ready = next(e for e in result.evidence if e.check == "GET /v2/health/ready")
    assert not ready.passed and ready.observed.startswith("503") and "0/6 pods ready" in ready.observed
    assert next(e for e in result.evidence if e.check == "GET /v2/health/live").passed
    assert "region us-west-2" in result.summary
    assert "GET /v2/health/ready: 503" in result.summary and "0/6 pods ready" in result.summary
    assert "GET /v2/health/live" not in result.summary  # it never failed


def test_health_gate_on_a_down_region_fails_every_check(world):
    world.board.update(region_down=[WEST])
    result = world.env().run(
        world.probes.health_gate,
        HealthInput(runbook=make_runbook(health={"timeout": "10s"}), region=WEST, speed=SPEED),
    )
    assert not result.passed and not any(e.passed for e in result.evidence)
    assert "GET /v2/health/live: 503" in result.summary
    assert "region us-west-2 is down" in result.summary


# ------------------------------------------------------------------------ analysis (no Prometheus)
ANALYSIS_RUNBOOK = {"traffic_shift": {"rollback": {"min_requests": 10}}}


def analysed_under_traffic(world, ramp_at_weight: int, window_seconds: float, *regions: str) -> list[AnalyseResult]:
    """Each region's analysis, in turn, while traffic flows and WEST errors from `ramp_at_weight`."""
    world.board.update(error_ramp={WEST: ErrorRamp(at_weight=ramp_at_weight, error_rate=0.3)})
    runbook = make_runbook(**ANALYSIS_RUNBOOK)
    with world.traffic() as traffic:
        wait_until(lambda: traffic.stats()[WEST].ok >= 5, what="traffic flowing")
        return [
            world.env().run(world.probes.analyse, AnalyseInput(runbook=runbook, region=region, window_seconds=window_seconds))
            for region in regions
        ]


def test_analyse_under_traffic_tells_a_healthy_region_from_a_degraded_one(world):
    east, west = analysed_under_traffic(world, 50, 1.5, EAST, WEST)
    assert east.healthy and east.error_rate == 0 and east.requests >= 10
    assert all(e.passed for e in east.evidence)
    assert not west.healthy and west.requests >= 10
    assert 0.2 <= west.error_rate <= 0.4
    rate = next(e for e in west.evidence if e.check == "error rate")
    assert not rate.passed and "/metrics over 1.5s" in rate.observed


def test_analyse_below_the_ramp_weight_stays_healthy(world):
    (west,) = analysed_under_traffic(world, 75, 1.0, WEST)
    assert west.healthy and west.error_rate == 0


def test_analyse_probes_when_there_is_too_little_traffic(world):
    world.board.update(error_ramp={WEST: ErrorRamp(at_weight=50, error_rate=0.3)})
    runbook = make_runbook(**ANALYSIS_RUNBOOK)
    result = world.env().run(
        world.probes.analyse, AnalyseInput(runbook=runbook, region=WEST, window_seconds=0.2, speed=SPEED)
    )
    assert not result.healthy
    assert result.requests == 100 and result.error_rate == pytest.approx(0.3)
    assert "too little traffic (0 requests < 10), probed with 100 requests" in result.evidence[0].observed


def test_analyse_a_down_region_is_unhealthy_not_an_error(world):
    world.board.update(region_down=[WEST])
    result = world.env().run(
        world.probes.analyse,
        AnalyseInput(runbook=make_runbook(**ANALYSIS_RUNBOOK), region=WEST, window_seconds=0.2, speed=SPEED),
    )
    assert not result.healthy and result.error_rate == 1.0
    assert "answered 503" in result.evidence[0].observed
    assert result.evidence[1].observed.startswith("no answers")


@pytest.mark.parametrize("speed", [1.0, 60.0])
def test_analyse_judges_latency_by_the_runbook_limit_at_any_speed(world, speed):
    # 600 ms per request against a 500 ms limit: unhealthy at speed 60 as at speed 1 (the
    # limit is not divided by the speed, nor the latency).
    world.board.update(extra_latency_seconds={WEST: 0.6})
    runbook = make_runbook(traffic_shift={"rollback": {"min_requests": 10, "max_p99_latency": "500ms"}})
    with world.traffic(rate=60) as traffic:
        wait_until(lambda: traffic.stats()[WEST].ok >= 5, what="traffic flowing")
        west = world.env().run(
            world.probes.analyse, AnalyseInput(runbook=runbook, region=WEST, window_seconds=1.5, speed=speed)
        )
        east = world.env().run(
            world.probes.analyse, AnalyseInput(runbook=runbook, region=EAST, window_seconds=1.5, speed=speed)
        )
    assert not west.healthy and west.error_rate == 0
    latency = next(e for e in west.evidence if e.check == "p99 latency")
    assert not latency.passed and west.p99_ms >= 500
    assert "(max 500.0 ms;" in latency.observed
    # The healthy region's loopback answers (20 ms) pass the same unscaled limit.
    assert east.healthy, east.evidence


def test_health_gate_at_high_speed_gives_slow_requests_their_real_time(world):
    # Readiness answers in ~0.25 s real; at speed 300 the 60 s timeout is 0.2 s of waits.
    # Requests are not waits: a healthy region passes its 3 rounds, as it would at speed 1.
    def slow_ready() -> bool:
        time.sleep(0.25)
        return True

    models = ["llm-7b", "embed-small"]
    with ModelServer(WEST, world.board, readiness=slow_ready, models=models, cache_seconds=0) as slow:
        world.probes.endpoint_map[make_runbook().regions[WEST].endpoint.rstrip("/")] = slow.url
        result = world.env().run(
            world.probes.health_gate,
            HealthInput(runbook=make_runbook(health={"http": [{"path": "/v2/health/ready"}]}), region=WEST, speed=300),
        )
    assert result.passed and result.consecutive == 3, result.summary


# ------------------------------------------------------------------------ Prometheus
PROMETHEUS = shutil.which("prometheus")
PROM_URLS = {EAST: "http://prometheus.use1.example.com:9090", WEST: "http://prometheus.usw2.example.com:9090"}
# `or vector(0)`: a region with no 5xx series has an error rate of 0, not "no data".
ERROR_RATE = (
    '(sum(rate(inference_requests_total{region="{region}",code=~"5.."}[5s])) or vector(0)) '
    '/ sum(rate(inference_requests_total{region="{region}"}[5s]))'
)


def prom_runbook(**health) -> Runbook:
    return make_runbook(
        regions={r: {"prometheus": url} for r, url in PROM_URLS.items()},
        health={
            "prometheus": [{"name": "error-rate", "query": ERROR_RATE, "max": 0.05}],
            "consecutive": 2,
            "scrape_interval": "1s",  # prom_world's Prometheus scrapes every second
            **health,
        },
        traffic_shift={
            "rollback": {"min_requests": 10},
            "analysis": [{"name": "weight", "query": 'max(drpilot_sandbox_region_weight{region="{region}"})', "min": 1}],
        },
    )


@pytest.fixture(scope="module")
def prom_world(tmp_path_factory):
    if PROMETHEUS is None:
        pytest.skip("Debian's `prometheus` is not installed (apt-get install prometheus); Prometheus query path untested")
    tmp: Path = tmp_path_factory.mktemp("prometheus")
    port = free_loopback_port()
    url = f"http://127.0.0.1:{port}"
    world = start_world(prometheus_map=dict.fromkeys(PROM_URLS.values(), url))
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [
            {
                "job_name": "model-server",
                "honor_labels": True,
                "static_configs": [{"targets": [s.url.split("://")[1]]} for s in world.servers.values()],
            }
        ],
    }
    (tmp / "prometheus.yml").write_text(yaml.safe_dump(config))
    log = (tmp / "prometheus.log").open("wb")
    process = subprocess.Popen(
        [
            PROMETHEUS,
            f"--config.file={tmp / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    world.board.update(error_ramp={WEST: ErrorRamp(at_weight=50, error_rate=0.3)})
    traffic = world.traffic(rate=60)
    try:
        wait_until(lambda: _ok(f"{url}/-/ready"), what="Prometheus ready")
        traffic.start()

        def scraped() -> bool:
            query = 'min(count_over_time(inference_requests_total{code="200"}[10s]))'
            body = httpx.get(f"{url}/api/v1/query", params={"query": query}, timeout=2).json()
            result = body["data"]["result"]
            return bool(result) and float(result[0]["value"][1]) >= 4

        wait_until(scraped, timeout=30, what="four scrapes of each region's traffic")
        yield world
    finally:
        traffic.stop()
        process.terminate()
        process.wait(timeout=15)
        log.close()
        stop_world(world)


def _ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def test_prometheus_analysis_tells_healthy_from_degraded(prom_world):
    runbook = prom_runbook()
    east = prom_world.env().run(prom_world.probes.analyse, AnalyseInput(runbook=runbook, region=EAST, window_seconds=5))
    west = prom_world.env().run(prom_world.probes.analyse, AnalyseInput(runbook=runbook, region=WEST, window_seconds=5))
    assert east.healthy and east.requests >= 10 and east.error_rate == 0
    assert "Prometheus over 5s" in east.evidence[0].observed
    assert next(e for e in east.evidence if e.check == "weight").passed  # {region} filled into braces
    assert not west.healthy and 0.15 <= west.error_rate <= 0.45
    assert 0 < west.p99_ms < 2000


def test_prometheus_health_gate_checks_the_query_per_region(prom_world):
    runbook = prom_runbook()
    passed = prom_world.env().run(
        prom_world.probes.health_gate, HealthInput(runbook=runbook, region=EAST, speed=SPEED)
    )
    assert passed.passed
    assert next(e for e in passed.evidence if e.check == "error-rate").observed.startswith("0 (max 0.05)")
    failed = prom_world.env().run(
        prom_world.probes.health_gate,
        HealthInput(runbook=prom_runbook(timeout="20s"), region=WEST, speed=SPEED),
    )
    assert not failed.passed
    assert re.search(r"error-rate: 0\.[234]\d* \(max 0\.05\)", failed.summary), failed.summary


def test_unreachable_prometheus_makes_analysis_retryable(world):
    world.probes.prometheus_map = dict.fromkeys(PROM_URLS.values(), f"http://127.0.0.1:{free_loopback_port()}")
    with pytest.raises(ApplicationError, match="cannot analyse region us-east-1: Prometheus .* unreachable") as caught:
        world.env().run(world.probes.analyse, AnalyseInput(runbook=prom_runbook(), region=EAST, window_seconds=5))
    assert not caught.value.non_retryable


def test_prometheus_no_data_passes_a_ceiling_but_not_a_floor(prom_world):
    absent = "drpilot_metric_that_does_not_exist"
    ceiling = prom_world.env().run(
        prom_world.probes.health_gate,
        HealthInput(runbook=prom_runbook(prometheus=[{"name": "absent", "query": absent, "max": 1}]), region=EAST, speed=SPEED),
    )
    assert ceiling.passed and ceiling.evidence[-1].observed == "no data (max 1)"
    floor = prom_world.env().run(
        prom_world.probes.health_gate,
        HealthInput(
            runbook=prom_runbook(prometheus=[{"name": "absent", "query": absent, "min": 1}], timeout="10s"),
            region=EAST,
            speed=SPEED,
        ),
    )
    assert not floor.passed and "absent: no data (min 1)" in floor.summary


def test_prometheus_rejecting_an_analysis_query_is_failing_evidence_not_an_error(prom_world):
    runbook = prom_runbook().model_dump(mode="json")
    runbook["spec"]["traffic_shift"]["analysis"] = [{"name": "typo", "query": "sum(", "max": 1}]
    result = prom_world.env().run(
        prom_world.probes.analyse,
        AnalyseInput(runbook=Runbook.model_validate(runbook), region=EAST, window_seconds=5),
    )
    assert not result.healthy
    typo = next(e for e in result.evidence if e.check == "typo")
    assert not typo.passed and "Prometheus rejected 'sum('" in typo.observed


# -------------------------------------------- measurement windows at rehearsal speed
# An error ratio over a 10 s range: after a region's errors stop, it reads 0 only once the
# range holds none of them (10 s, plus a scrape).
ERROR_RATE_10S = ERROR_RATE.replace("[5s]", "[10s]")


def east_error_rate(url: str) -> float:
    query = ERROR_RATE_10S.replace("{region}", EAST)
    result = httpx.get(f"{url}/api/v1/query", params={"query": query}, timeout=2).json()["data"]["result"]
    return float(result[0]["value"][1]) if result else 0.0


@pytest.fixture
def east_just_recovered(prom_world):
    """us-east-1 served errors (a rolled-back attempt) and has just stopped: Prometheus's
    10 s range still holds them. Yields a function that makes the region bad again."""
    url = prom_world.probes.prometheus_map[PROM_URLS[EAST]]
    west = prom_world.board.now.error_ramp[WEST]
    bad = {WEST: west, EAST: ErrorRamp(at_weight=0, error_rate=0.5)}
    prom_world.board.update(error_ramp=bad)
    try:
        wait_until(lambda: east_error_rate(url) > 0.2, timeout=30, what="us-east-1's errors in Prometheus")
        prom_world.board.update(error_ramp={WEST: west})
        yield lambda: prom_world.board.update(error_ramp=bad)
    finally:
        prom_world.board.update(error_ramp={WEST: west})


def gate_after_errors(world, speed: float):
    runbook = prom_runbook(
        prometheus=[{"name": "error-rate", "query": ERROR_RATE_10S, "max": 0.05}], timeout="20s", interval="2s"
    )
    return world.env().run(world.probes.health_gate, HealthInput(runbook=runbook, region=EAST, speed=speed))


@pytest.mark.parametrize("speed", [1, 60])
def test_a_gate_right_after_errors_passes_at_rehearsal_speed_as_at_speed_1(prom_world, east_just_recovered, speed):
    # At speed 60 the gate's 20 s timeout is a third of a second, while the range still
    # holds the errors for 10 s: without waiting for the measurement, a rehearsal would fail
    # a region that a real failback (speed 1) passes.
    result = gate_after_errors(prom_world, speed)
    assert result.passed, result.summary
    held = [w for w in result.waits if w.kind == "measurement"]
    if speed == 1:
        assert not held  # nothing a real run does not do
    else:  # the hold is the rehearsal's own: the projection counts it as nothing at speed 1
        assert held and held[0].unscaled_seconds == 0 and held[0].seconds >= 10


@pytest.mark.parametrize("speed", [1, 60])
def test_a_gate_on_a_region_still_failing_fails_at_every_speed(prom_world, east_just_recovered, speed):
    east_just_recovered()  # the errors go on
    result = gate_after_errors(prom_world, speed)
    assert not result.passed
    assert re.search(r"error-rate: 0\.[3-7]\d* \(max 0\.05\)", result.summary), result.summary
    if speed != 1:
        assert "held 11s of real time for the Prometheus checks' ranges" in result.summary

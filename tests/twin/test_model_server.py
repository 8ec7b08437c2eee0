"""The twin's model servers and traffic generator, over real HTTP on loopback."""

from __future__ import annotations

import threading
import time

import httpx
import pytest
from drpilot_twin.faults import ErrorRamp, FaultBoard
from drpilot_twin.model_server import BUCKETS, ModelServer, seed_model_servers
from drpilot_twin.users import TrafficGenerator

from activities.probes.exposition import histogram_quantile, parse_metrics

REGION = "us-east-1"
BODY = {"inputs": [{"name": "text_input", "shape": [1], "datatype": "BYTES", "data": ["hi"]}]}


class Switches:
    """What the twin would compute from Kubernetes, S3 and DNS, set by hand."""

    def __init__(self) -> None:
        self.ready: bool | tuple[bool, str] = True
        self.weight: int | None = 0


@pytest.fixture
def board() -> FaultBoard:
    return FaultBoard()


@pytest.fixture
def switches() -> Switches:
    return Switches()


@pytest.fixture
def server(board, switches):
    ms = ModelServer(
        REGION,
        board,
        readiness=lambda: switches.ready,
        weight=lambda: switches.weight,
        models=["llm-7b", "embed-small"],
        cache_seconds=0,
    )
    ms.start()
    yield ms
    ms.stop()


@pytest.fixture
def http():
    with httpx.Client(trust_env=False, timeout=10) as client:
        yield client


def infer(http: httpx.Client, server: ModelServer, model: str = "llm-7b", body=BODY) -> httpx.Response:
    return http.post(f"{server.url}/v2/models/{model}/infer", json=body)


def test_start_binds_loopback_and_stop_leaves_no_thread(board, http):
    before = set(threading.enumerate())
    ms = ModelServer(REGION, board, models=["llm-7b"])
    ms.start()
    assert ms.url.startswith("http://127.0.0.1:")
    assert http.get(f"{ms.url}/v2/health/live").status_code == 200  # keep-alive connection stays open
    ms.stop()
    ms.stop()  # idempotent
    assert set(threading.enumerate()) - before == set()
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{ms.url}/v2/health/live", timeout=1)


def test_live_is_independent_of_readiness_and_ready_says_why(server, switches, http):
    switches.ready = (False, "0/6 pods ready in ml-serving/inference-service")
    live = http.get(f"{server.url}/v2/health/live")
    ready = http.get(f"{server.url}/v2/health/ready")
    model_ready = http.get(f"{server.url}/v2/models/llm-7b/ready")
    assert live.status_code == 200
    assert ready.status_code == 503
    assert ready.json() == {"ready": False, "reason": "0/6 pods ready in ml-serving/inference-service"}
    assert model_ready.status_code == 503

    switches.ready = True
    assert http.get(f"{server.url}/v2/health/ready").json() == {"ready": True}
    assert http.get(f"{server.url}/v2/models/llm-7b/ready").status_code == 200
    assert http.get(f"{server.url}/v2/models/unknown/ready").status_code == 404


def test_readiness_that_cannot_be_checked_is_not_ready(board, http):
    def broken() -> bool:
        raise ConnectionError("kube API emulator unreachable")

    with ModelServer(REGION, board, readiness=broken, models=["llm-7b"], cache_seconds=0) as ms:
        answer = http.get(f"{ms.url}/v2/health/ready")
    assert answer.status_code == 503
    assert answer.json()["reason"] == "readiness check failed: ConnectionError: kube API emulator unreachable"


def test_inference_answers_kserve_v2_and_refuses_when_not_ready(server, switches, http):
    ok = infer(http, server, body={**BODY, "id": "req-1"})
    assert ok.status_code == 200
    payload = ok.json()
    assert payload["model_name"] == "llm-7b"
    assert payload["id"] == "req-1"
    assert payload["outputs"][0]["datatype"] == "BYTES"

    assert infer(http, server, model="nope").status_code == 404
    assert infer(http, server, body={"not": "inputs"}).status_code == 400

    switches.ready = False
    refused = infer(http, server)
    assert refused.status_code == 503
    assert "not ready" in refused.json()["error"]
    assert server.counts() == {("llm-7b", 200): 1, ("nope", 404): 1, ("llm-7b", 400): 1, ("llm-7b", 503): 1}


def test_metrics_are_prometheus_text_that_matches_what_was_served(server, switches, http):
    switches.weight = 40
    for _ in range(3):
        infer(http, server)
    infer(http, server, model="embed-small")
    switches.ready = False
    infer(http, server)

    response = http.get(f"{server.url}/metrics")
    assert response.headers["content-type"].startswith("text/plain")
    samples = parse_metrics(response.text)
    requests = {
        (s.labels["model"], s.labels["code"]): s.value for s in samples if s.name == "inference_requests_total"
    }
    assert requests == {("llm-7b", "200"): 3, ("embed-small", "200"): 1, ("llm-7b", "503"): 1}
    assert all(s.labels["region"] == REGION for s in samples)

    buckets = [
        (float(s.labels["le"]), s.value)
        for s in samples
        if s.name == "inference_request_duration_seconds_bucket" and s.labels["model"] == "llm-7b"
    ]
    assert len(buckets) == len(BUCKETS) + 1
    counts = [n for _, n in sorted(buckets)]
    assert counts == sorted(counts), "histogram buckets are cumulative"
    count = next(
        s.value for s in samples if s.name == "inference_request_duration_seconds_count" and s.labels["model"] == "llm-7b"
    )
    assert counts[-1] == count == 4
    assert histogram_quantile(0.5, buckets) > 0
    weight = next(s for s in samples if s.name == "drpilot_sandbox_region_weight")
    assert weight.value == 40


def test_region_down_fails_every_request_until_cleared(server, board, http):
    board.update(region_down=[REGION])
    assert http.get(f"{server.url}/v2/health/live").status_code == 503
    assert http.get(f"{server.url}/v2/health/ready").json()["error"] == f"region {REGION} is down"
    assert infer(http, server).status_code == 503
    assert http.get(f"{server.url}/metrics").status_code == 503
    assert server.refused_while_down == 4

    board.update(region_down=[])
    assert http.get(f"{server.url}/v2/health/live").status_code == 200
    assert infer(http, server).status_code == 200


def test_error_ramp_applies_at_the_weight_and_not_below(server, board, switches, http):
    board.update(error_ramp={REGION: ErrorRamp(at_weight=50, error_rate=0.25)})
    switches.weight = 49
    below = [infer(http, server).status_code for _ in range(20)]
    assert below == [200] * 20

    switches.weight = 50
    at = [infer(http, server).status_code for _ in range(40)]
    assert at.count(500) == 10  # deterministic by request count: exactly the rate
    assert set(at) == {200, 500}

    switches.weight = 100
    above = [infer(http, server).status_code for _ in range(8)]
    assert above.count(500) == 2

    board.update(error_ramp={})
    assert infer(http, server).status_code == 200


def test_unknown_weight_never_triggers_the_ramp(server, board, switches, http):
    board.update(error_ramp={REGION: ErrorRamp(at_weight=0, error_rate=1.0)})
    switches.weight = None
    assert infer(http, server).status_code == 200
    switches.weight = 0
    assert infer(http, server).status_code == 500


def test_extra_latency_is_what_a_request_takes(server, board, http):
    # Not divided by any rehearsal speed: the runbook's p99 limit judges it as it stands.
    board.update(extra_latency_seconds={REGION: 0.3})
    started = time.monotonic()
    assert infer(http, server).status_code == 200
    assert time.monotonic() - started >= 0.3
    assert server.records[-1].seconds >= 0.3
    samples = parse_metrics(http.get(f"{server.url}/metrics").text)
    below = next(
        s.value
        for s in samples
        if s.name == "inference_request_duration_seconds_bucket" and s.labels == {"region": REGION, "model": "llm-7b", "le": "0.25"}
    )
    assert below == 0


def test_seed_model_servers_builds_one_per_region(board):
    from drpilot.domain.loader import load_runbook
    from tests.support.paths import RUNBOOKS

    runbook = load_runbook(RUNBOOKS / "llm-inference-clouddns.yaml")
    servers = seed_model_servers(runbook, board, weight=lambda region: lambda: 7)
    assert set(servers) == set(runbook.spec.regions)
    server = servers["europe-west4"]
    assert server.models == ["llama-8b-instruct"] and server.weight() == 7


# ------------------------------------------------------------------------ traffic generator
@pytest.fixture
def two_servers(board):
    servers = {r: ModelServer(r, board, models=["llm-7b"]) for r in ("us-east-1", "us-west-2")}
    for s in servers.values():
        s.start()
    yield servers
    for s in servers.values():
        s.stop()


def wait_until(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def test_traffic_follows_the_live_weights(two_servers):
    weights = {"us-east-1": 75, "us-west-2": 25}
    endpoints = {r: s.url for r, s in two_servers.items()}
    with TrafficGenerator(endpoints, lambda: dict(weights), rate_per_second=100, refresh_seconds=0.05) as traffic:
        wait_until(lambda: sum(s.sent for s in traffic.stats().values()) >= 80)
        stats = traffic.stats()
        east, west = stats["us-east-1"].sent, stats["us-west-2"].sent
        # Smooth round-robin: the split is exact to within one request per region.
        assert abs(east - 3 * west) <= 4

        weights.update({"us-east-1": 0, "us-west-2": 100})
        wait_until(lambda: traffic.weights == weights)
        traffic.reset()
        wait_until(lambda: traffic.stats()["us-west-2"].ok >= 20)
        assert traffic.stats()["us-east-1"].sent == 0
    assert two_servers["us-west-2"].inference_requests >= 20
    final = traffic.stats()["us-west-2"]
    assert final.errors == 0 and final.p(50) > 0
    summary = final.summary()
    assert summary["ok"] == final.ok and summary["codes"] == {"200": final.ok} and summary["p99_ms"] > 0
    # The generator's own threads are gone (the servers' handlers end when they see EOF).
    assert [t.name for t in threading.enumerate() if t.name.startswith("traffic")] == []


def test_traffic_counts_errors_per_region(two_servers, board):
    board.update(region_down=["us-west-2"])
    endpoints = {r: s.url for r, s in two_servers.items()}
    with TrafficGenerator(endpoints, lambda: {"us-east-1": 50, "us-west-2": 50}, rate_per_second=100) as traffic:
        wait_until(lambda: traffic.stats()["us-west-2"].errors >= 10 and traffic.stats()["us-east-1"].ok >= 10)
    stats = traffic.stats()
    assert stats["us-west-2"].ok == 0 and stats["us-west-2"].codes["503"] == stats["us-west-2"].errors
    assert stats["us-east-1"].errors == 0


def test_traffic_keeps_the_last_weights_when_the_source_fails(two_servers):
    calls = {"n": 0}

    def flaky() -> dict[str, int]:
        calls["n"] += 1
        if calls["n"] > 1:
            raise ConnectionError("DNS endpoint restarting")
        return {"us-east-1": 100}

    endpoints = {r: s.url for r, s in two_servers.items()}
    with TrafficGenerator(endpoints, flaky, rate_per_second=100, refresh_seconds=0.02) as traffic:
        wait_until(lambda: traffic.weight_errors >= 3 and traffic.stats()["us-east-1"].ok >= 10)
        assert traffic.weights == {"us-east-1": 100}


def test_traffic_refuses_anything_but_loopback():
    with pytest.raises(ValueError, match="only sent to loopback"):
        TrafficGenerator({"us-east-1": "https://inference.use1.example.com"}, dict, rate_per_second=1)


def test_version_ready_answers_what_the_pods_loaded(board, http):
    # KServe v2 GET /v2/models/{name}/versions/{version}/ready: 200 when loaded, 404 when
    # that version is not (the twin says which pods loaded what), 503 while not ready.
    loaded = {("llm-7b", "2024-01-15")}
    state = {"ready": True}
    with ModelServer(
        REGION, board, readiness=lambda: state["ready"], models=["llm-7b"], cache_seconds=0,
        version_ready=lambda m, v: ((m, v) in loaded, "pods started before its artifacts were complete"),
    ) as ms:
        ok = http.get(f"{ms.url}/v2/models/llm-7b/versions/2024-01-15/ready")
        assert (ok.status_code, ok.json()) == (200, {"name": "llm-7b", "version": "2024-01-15", "ready": True})
        stale = http.get(f"{ms.url}/v2/models/llm-7b/versions/2023-12-01/ready")
        assert stale.status_code == 404 and "started before its artifacts" in stale.json()["error"]
        assert http.get(f"{ms.url}/v2/models/nope/versions/1/ready").status_code == 404
        state["ready"] = False
        assert http.get(f"{ms.url}/v2/models/llm-7b/versions/2024-01-15/ready").status_code == 503

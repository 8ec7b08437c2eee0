"""The fault control API and the `key=value` fault syntax of `drpilot sandbox fault set`."""

from __future__ import annotations

import httpx
import pytest
from drpilot_twin.control import ControlServer, FaultError, parse_fault_args
from drpilot_twin.faults import ColdModel, ErrorRamp, FaultBoard, Faults

REGIONS = ["us-east-1", "us-west-2"]


def test_key_values_become_fault_fields():
    patch = parse_fault_args(
        [
            "region_down=us-east-1",
            "pods-stalled=us-west-2,us-east-1",
            "pod_start_seconds.us-west-2=30",
            "glacier_delay_seconds=12.5",
            "route53_throttle_count=3",
            "error_ramp.us-east-1=50%:20%",
            "extra_latency_seconds.us-west-2=0.25",
            "cold_model.us-west-2=2:40",
        ]
    )
    faults = Faults.from_json(patch)
    assert faults.region_down == frozenset({"us-east-1"})
    assert faults.pods_stalled == frozenset({"us-west-2", "us-east-1"})
    assert faults.pod_start_seconds == {"us-west-2": 30.0}
    assert faults.glacier_delay_seconds == 12.5
    assert faults.route53_throttle_count == 3
    assert faults.error_ramp == {"us-east-1": ErrorRamp(at_weight=50, error_rate=0.2)}
    assert faults.extra_latency_seconds == {"us-west-2": 0.25}
    assert faults.cold_model == {"us-west-2": ColdModel(seconds=2.0, requests=40)}
    assert [faults.cold_model["us-west-2"].extra(n) for n in (0, 20, 40, 99)] == [2.0, 1.0, 0.0, 0.0]


def test_per_region_entries_merge_and_empty_values_clear():
    current = Faults(pod_start_seconds={"us-east-1": 5.0}, region_down=frozenset({"us-east-1"}))
    patch = parse_fault_args(["pod_start_seconds.us-west-2=30", "region_down="], current)
    assert patch == {"pod_start_seconds": {"us-east-1": 5.0, "us-west-2": 30.0}, "region_down": []}
    assert parse_fault_args(["pod_start_seconds.us-east-1="], current) == {"pod_start_seconds": {}}


def test_json_object_is_accepted_as_is():
    body = '{"error_ramp": {"us-east-1": {"at_weight": 25, "error_rate": 0.5}}}'
    assert Faults.from_json(parse_fault_args([body])).error_ramp["us-east-1"].at_weight == 25


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["regoin_down=x"], "unknown fault 'regoin_down'"),
        (["region_down"], "expected key=value"),
        (["glacier_delay_seconds=soon"], "expected a number"),
        (["route53_throttle_count=2.5"], "expected an integer"),
        (["error_ramp.us-east-1=50"], "expected AT_WEIGHT:ERROR_RATE"),
        (["error_ramp.us-east-1=50:3"], "between 0 and 1"),
        (["cold_model.us-east-1=2"], "expected SECONDS:REQUESTS"),
        (["cold_model.us-east-1=2:0"], "requests >= 1"),
        (["pod_start_seconds=3"], "give it per region"),
        (["glacier_delay_seconds.us-east-1=3"], "is not per region"),
        (['{"nope": 1}'], "unknown fault(s): nope"),
    ],
)
def test_mistakes_are_named(args, message):
    with pytest.raises(FaultError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_fault_args(args)


@pytest.fixture
def control():
    board = FaultBoard()
    server = ControlServer(board, lambda: {"runbook": "x", "weights": {"us-east-1": 100}}, regions=REGIONS)
    server.start()
    yield server
    server.stop()


def test_faults_over_http(control):
    with httpx.Client(base_url=control.url) as http:
        assert http.get("/faults").json() == Faults().to_json()
        reply = http.patch("/faults", json={"region_down": ["us-east-1"], "route53_throttle_count": 2})
        assert reply.status_code == 200
        assert control.board.now.region_down == frozenset({"us-east-1"})
        # PATCH keeps what it does not name; PUT replaces everything.
        http.patch("/faults", json={"glacier_delay_seconds": 9})
        assert control.board.now.route53_throttle_count == 2
        http.put("/faults", json={"pods_stalled": ["us-west-2"]})
        assert control.board.now == Faults(pods_stalled=frozenset({"us-west-2"}))
        assert http.delete("/faults").json() == Faults().to_json()
        assert control.board.now == Faults()
        assert http.get("/status").json()["weights"] == {"us-east-1": 100}


def test_bad_requests_change_nothing_and_say_why(control):
    with httpx.Client(base_url=control.url) as http:
        typo = http.patch("/faults", json={"region_down": ["us-east-9"]})
        assert typo.status_code == 400
        assert "unknown region(s) us-east-9" in typo.json()["error"]
        unknown = http.patch("/faults", json={"region_dwn": ["us-east-1"]})
        assert unknown.status_code == 400 and "region_dwn" in unknown.json()["error"]
        broken = http.patch("/faults", content=b"{not json", headers={"Content-Type": "application/json"})
        assert broken.status_code == 400
        assert http.get("/nope").status_code == 404
        assert http.post("/faults", json={}).status_code == 405
    assert control.board.now == Faults()


def test_stop_is_idempotent_and_frees_the_port(control):
    url = control.url
    control.stop()
    control.stop()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/faults", timeout=1)

"""`drpilot evacuate REGION --runbooks DIR` against the twin, real processes all the way: the
runbooks serving from the region fail over together, the others are left alone and said so."""

from __future__ import annotations

import json
import os
import signal
import subprocess

import boto3
import pytest
from drpilot_twin.aws.moto_server import AWS_ENV
from drpilot_twin.aws.route53 import Route53Records, seed_route53
from drpilot_twin.faults import Faults

from tests.support.paths import DRPILOT, ROUTE53_RUNBOOK
from tests.support.runbooks import renamed

pytestmark = pytest.mark.e2e
LOST, STANDBY = "us-east-1", "us-west-2"


def test_evacuate_moves_every_runbook_serving_from_the_region_and_leaves_the_rest(twin_factory, tmp_path):
    fleet = tmp_path / "fleet"
    fleet.mkdir()
    twin = twin_factory(ROUTE53_RUNBOOK, temporal=True, speed=300, faults=Faults(region_down=frozenset({LOST})))
    route53 = boto3.client("route53", endpoint_url=twin.moto.url, region_name=AWS_ENV["AWS_DEFAULT_REGION"],
                           aws_access_key_id=AWS_ENV["AWS_ACCESS_KEY_ID"], aws_secret_access_key=AWS_ENV["AWS_SECRET_ACCESS_KEY"])
    serving = [renamed(fleet, "chat"), renamed(fleet, "embed")]
    moved_already = renamed(fleet, "rerank")
    for rb in [*serving, moved_already]:
        zone = seed_route53(route53, rb)
    Route53Records(route53, moved_already, zone).put({LOST: 0, STANDBY: 100})
    (fleet / "broken.yaml").write_text("apiVersion: drpilot/v1\nkind: Runbook\n")
    env = {**os.environ, **twin.env()}
    log = (tmp_path / "worker.log").open("wb")
    worker = subprocess.Popen([str(DRPILOT), "worker"], env=env, stdout=subprocess.DEVNULL, stderr=log, start_new_session=True)
    try:
        done = subprocess.run([str(DRPILOT), "evacuate", LOST, "--runbooks", str(fleet), "--yes", "--json",
                               "--report", str(tmp_path / "reports")],
                              env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=300)
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(30)
        log.close()
    assert done.returncode == 0, done.stdout + done.stderr
    answer = json.loads(done.stdout)
    assert {r["runbook"]: r["outcome"] for r in answer["runs"]} == {"chat": "completed", "embed": "completed"}
    assert all(r["dns"] == {LOST: 0, STANDBY: 100} for r in answer["runs"])
    assert {a["runbook"]: a["why"] for a in answer["left_alone"]} == {
        "rerank": "not serving from the region",
        "broken.yaml": next(a["why"] for a in answer["left_alone"] if a["runbook"] == "broken.yaml"),
    }
    assert next(a["why"] for a in answer["left_alone"] if a["runbook"] == "broken.yaml").startswith("invalid: ")
    # One admission update for the whole fleet, then each run on its own (ids action:runbook).
    assert sorted(r["run_id"] for r in answer["runs"]) == ["failover:chat", "failover:embed"]
    reports = sorted(p.name for p in (tmp_path / "reports").iterdir())
    assert any(n.startswith(f"evacuation-{LOST}-") for n in reports)
    assert sum(n.endswith(".html") for n in reports) == 2
    weights = {rb.name: Route53Records(route53, rb, zone).weights() for rb in [*serving, moved_already]}
    assert weights == dict.fromkeys(["chat", "embed", "rerank"], {LOST: 0, STANDBY: 100})

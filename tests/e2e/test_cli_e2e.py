"""End to end, as on-call runs it: `drpilot sandbox up`, `drpilot worker`, then
`drpilot failover --wait --json` and `drpilot failback --wait --json`, real processes all the
way, the twin checked through plain boto3 afterwards."""

from __future__ import annotations

import json
import os
import signal
import subprocess

import boto3
import pytest

from tests.sandbox.conftest import DRPILOT, ROUTE53_RUNBOOK, sandbox_process  # noqa: F401

pytestmark = pytest.mark.e2e
SPEED = "300"  # 15-minute bakes take 3 s; the twin's pods and restores scale alike


def drpilot(env: dict[str, str], *args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([str(DRPILOT), *args], env=env, capture_output=True, text=True, timeout=timeout)


def route53_weights(env: dict[str, str]) -> dict[str, int]:
    client = boto3.client(
        "route53", endpoint_url=env["AWS_ENDPOINT_URL"], region_name="us-east-1",
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"], aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
    )
    zone = client.list_hosted_zones_by_name(DNSName="example.com.")["HostedZones"][0]["Id"]
    records = client.list_resource_record_sets(HostedZoneId=zone)["ResourceRecordSets"]
    return {r["SetIdentifier"]: r["Weight"] for r in records if r["Name"] == "inference.example.com."}


def test_failover_then_failback_through_the_cli(sandbox_process):  # noqa: F811
    sandbox = sandbox_process(ROUTE53_RUNBOOK, "--speed", SPEED)
    env = {**os.environ, **sandbox.env()}
    worker = subprocess.Popen([str(DRPILOT), "worker"], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert route53_weights(env) == {"us-east-1": 100, "us-west-2": 0}
        sandbox.cli("fault", "set", "region_down=us-east-1")

        failover = drpilot(env, "failover", str(ROUTE53_RUNBOOK), "--from", "us-east-1", "--yes", "--wait", "--json")
        assert failover.returncode == 0, failover.stderr
        result = json.loads(failover.stdout)
        assert {"run_id", "status", "phases", "rto_seconds", "objective_rto_seconds", "final_state", "speed"} <= set(result)
        assert result["status"] == "completed"
        assert result["run_id"] == "failover:llm-inference"
        assert 0 < result["rto_seconds"] < result["objective_rto_seconds"]
        assert result["final_state"]["dns"] == {"us-east-1": 0, "us-west-2": 100}
        assert route53_weights(env) == {"us-east-1": 0, "us-west-2": 100}
        assert result["final_state"]["replicas"]["us-west-2"] == {
            "ml-serving/inference-service": 6, "ml-serving/inference-gateway": 3}

        sandbox.cli("fault", "clear")
        failback = drpilot(env, "failback", str(ROUTE53_RUNBOOK), "--to", "us-east-1", "--yes", "--wait", "--json")
        assert failback.returncode == 0, failback.stderr
        back = json.loads(failback.stdout)
        assert back["status"] == "completed"
        assert route53_weights(env) == {"us-east-1": 100, "us-west-2": 0}
        shift_steps = [w["us-east-1"] for w in back["weights_applied"]]
        assert shift_steps == [10, 25, 50, 75, 100]
        # DR scaled back to standby once home serves everything.
        assert back["final_state"]["replicas"]["us-west-2"] == {
            "ml-serving/inference-service": 1, "ml-serving/inference-gateway": 1}
        assert back["speed"] == float(SPEED)
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(timeout=60)

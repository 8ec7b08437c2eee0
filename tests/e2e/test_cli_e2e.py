"""End to end, as on-call runs it: `drpilot sandbox up`, `drpilot worker`, then
`drpilot failover --wait --json` and `drpilot failback --wait --json`, real processes all the
way, the twin checked through plain boto3 afterwards."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import boto3
import pytest

from tests.support.paths import DRPILOT, ROUTE53_RUNBOOK

pytestmark = pytest.mark.e2e
SPEED = "300"  # 15-minute bakes take 3 s; the twin's pods and restores scale alike


def drpilot(env: dict[str, str], *args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([str(DRPILOT), *args], env=env, capture_output=True, text=True, timeout=timeout)


def why(run: subprocess.CompletedProcess, worker_log: Path) -> str:
    """Why a `--wait --json` run ended as it did: its status, each phase that did not end
    ok with its detail and evidence, its last messages, then drpilot's and the worker's
    stderr tails. An assertion message, so a failure under load says which it was."""
    lines = [f"exit {run.returncode}"]
    try:
        result = json.loads(run.stdout)
    except ValueError:
        lines.append(f"stdout (not a result): {run.stdout[-2000:]!r}")
    else:
        lines.append(f"run {result.get('run_id')}: status {result.get('status')}")
        for phase in result.get("phases", []):
            if phase.get("outcome") not in ("ok", "skipped"):
                lines.append(f"  phase {phase['name']}: {phase['outcome']}: {phase.get('detail', '')}")
                lines += [f"    {e['check']}: {'pass' if e['passed'] else 'FAIL'}: {e['observed']}"
                          for e in phase.get("evidence", [])]
        lines += [f"  message: {m}" for m in result.get("messages", [])[-5:]]
    lines.append(f"drpilot stderr: {run.stderr[-2000:]}")
    tail = worker_log.read_text(errors="replace").splitlines()[-40:] if worker_log.exists() else []
    lines.append("worker stderr (last 40 lines):")
    lines += [f"  {line}" for line in tail]
    return "\n".join(lines)


def route53_weights(env: dict[str, str]) -> dict[str, int]:
    client = boto3.client(
        "route53", endpoint_url=env["AWS_ENDPOINT_URL"], region_name="us-east-1",
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"], aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
    )
    zone = client.list_hosted_zones_by_name(DNSName="example.com.")["HostedZones"][0]["Id"]
    records = client.list_resource_record_sets(HostedZoneId=zone)["ResourceRecordSets"]
    return {r["SetIdentifier"]: r["Weight"] for r in records if r["Name"] == "inference.example.com."}


def test_failover_then_failback_through_the_cli(sandbox_process, tmp_path):
    sandbox = sandbox_process(ROUTE53_RUNBOOK, "--speed", SPEED)
    env = {**os.environ, **sandbox.env()}
    worker_log = tmp_path / "worker.stderr"
    # A file, not a pipe: nobody reads a pipe while the runs go, and a full one stalls the worker.
    with worker_log.open("w") as log:
        worker = subprocess.Popen([str(DRPILOT), "worker"], env=env, stdout=subprocess.DEVNULL,
                                  stderr=log, text=True, start_new_session=True)
    try:
        assert route53_weights(env) == {"us-east-1": 100, "us-west-2": 0}
        sandbox.cli("fault", "set", "region_down=us-east-1")

        reports = tmp_path / "reports"
        failover = drpilot(env, "failover", str(ROUTE53_RUNBOOK), "--from", "us-east-1", "--yes", "--wait", "--json",
                           "--report", str(reports))
        assert failover.returncode == 0, why(failover, worker_log)
        result = json.loads(failover.stdout)
        assert {"run_id", "status", "phases", "rto_seconds", "objective_rto_seconds", "final_state", "speed"} <= set(result)
        assert result["status"] == "completed"
        assert result["run_id"] == "failover:llm-inference"
        assert 0 < result["rto_seconds"] < result["objective_rto_seconds"]
        assert result["final_state"]["dns"] == {"us-east-1": 0, "us-west-2": 100}
        assert route53_weights(env) == {"us-east-1": 0, "us-west-2": 100}
        assert result["final_state"]["replicas"]["us-west-2"] == {
            "ml-serving/inference-service": 6, "ml-serving/inference-gateway": 3}
        # --report wrote the run's report in both formats, named after this execution.
        written = reports / f"failover-llm-inference-{result['temporal_run_id'][:8]}"
        assert f"report: {written}.html" in failover.stderr
        assert "failover of llm-inference: completed" in written.with_suffix(".md").read_text()
        assert '<svg xmlns="http://www.w3.org/2000/svg" class="timeline"' in written.with_suffix(".html").read_text()

        sandbox.cli("fault", "clear")
        failback = drpilot(env, "failback", str(ROUTE53_RUNBOOK), "--to", "us-east-1", "--yes", "--wait", "--json")
        assert failback.returncode == 0, why(failback, worker_log)
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

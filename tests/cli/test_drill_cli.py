"""`drpilot drill run --wait --json`, `drill status` and `drill history` as a user runs them
(subprocesses), against a Temporal dev server whose worker runs the drill on the simulated
world, with a real Alertmanager and moto's S3."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys

import pytest
from drpilot_twin.aws.moto_server import AWS_ENV

from tests.support.drills import BUCKET, Drills, drill_runbook
from tests.support.paths import ROOT, RUNBOOKS
from tests.support.world import World
from workflows.types import DrillResult

pytestmark = pytest.mark.e2e


def drpilot(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "drpilot", *args], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, **env}, stdin=subprocess.DEVNULL, timeout=120)


def _unstamped(text: str) -> str:
    return re.sub(r"^\d\d:\d\d:\d\dZ ", "", text, flags=re.MULTILINE)


async def test_drill_run_wait_json_then_status_and_history(dev_env, alertmanager, s3, tmp_path):
    text = (RUNBOOKS / "llm-inference.yaml").read_text()
    text = text.replace("http://alertmanager.monitoring:9093", alertmanager.url).replace("bake: 15m", "bake: 1m")
    text = text.replace("    soak: 10m\n", "    soak: 1m\n").replace("    soak_interval: 1m\n", "    soak_interval: 20s\n")
    assert f"s3://{BUCKET}/drills/" in text
    file = tmp_path / "llm-inference.yaml"
    file.write_text(text)
    rb = drill_runbook(alertmanager)  # the world's runbook: same regions, records and workloads
    world = World.normal(rb)
    d = Drills(dev_env.client, world, s3)
    env = {
        "DRPILOT_TEMPORAL_ADDRESS": dev_env.client.service_client.config.target_host,
        "DRPILOT_TASK_QUEUE": d.task_queue, "DRPILOT_SANDBOX": "1", "DRPILOT_SPEED": "60",
        **AWS_ENV, "AWS_ENDPOINT_URL": s3.meta.endpoint_url,
    }
    async with d.worker():
        ran = await asyncio.to_thread(drpilot, "drill", "run", str(file), "--yes", "--wait", "--json", env=env)
        assert ran.returncode == 0, ran.stderr
        result = DrillResult.model_validate(json.loads(ran.stdout))
        status = await asyncio.to_thread(drpilot, "drill", "status", result.drill_id, env=env)
        # The front door everybody knows shows drills too: by id, and in the listing.
        by_id = await asyncio.to_thread(drpilot, "status", result.drill_id, env=env)
        listed = await asyncio.to_thread(drpilot, "status", "--json", "--runbook", rb.name, env=env)
    assert result.status == "completed" and result.mode == "rehearsal" and result.speed == 60
    assert result.from_region == "us-east-1"  # --from defaults to the primary
    assert result.evidence_uri.startswith(f"s3://{BUCKET}/drills/llm-inference/")
    assert world.dns == rb.normal_weights() and world.changes[0] == {"us-east-1": 0, "us-west-2": 100}
    assert status.returncode == 0, status.stderr
    assert "failback" in status.stdout and "completed" in status.stdout
    # Without a terminal each line is stamped with the time it was printed: compare the rest.
    assert by_id.returncode == 0 and _unstamped(by_id.stdout) == _unstamped(status.stdout), by_id.stderr
    assert listed.returncode == 0, listed.stderr
    outcomes = {r["run_id"]: r["outcome"] for r in json.loads(listed.stdout)}
    assert outcomes[result.drill_id] == "completed"
    history = await asyncio.to_thread(drpilot, "drill", "history", str(file), env=env)
    assert history.returncode == 0, history.stderr
    assert f"{result.started_at:%Y-%m-%d %H:%M}" in history.stdout
    assert "RTO last" in history.stdout.strip().splitlines()[-1]

"""Drills and readiness as a user runs them against the sandbox twin: the real `drpilot
worker` (real activities: Route53 and S3 through moto, the Kubernetes emulators, the model
servers), the twin's real Alertmanager, the CLI as subprocesses. A schedule fires a rehearsal
drill, a blocking alert keeps the next from starting, `drill history` shows the per-phase
times from the evidence pack; readiness turns not ready when a standby artifact is deleted
and ready again when it is back."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from drpilot_twin.processes import alertmanager_binary

from drpilot.domain.loader import load_runbook
from drpilot.domain.settings import load_settings
from drpilot.frontdoor.temporal import connect
from tests.support.commands import assert_whole
from tests.support.paths import DRPILOT, ROUTE53_RUNBOOK

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(alertmanager_binary() is None, reason="prometheus-alertmanager not installed"),
]


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([str(DRPILOT), *args], capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL, timeout=180)


async def drill_from_trigger(env: dict[str, str], seen: int) -> dict:
    """`drpilot drill trigger`, then the result of the drill that firing started."""
    assert cli("drill", "trigger", "llm-inference", env=env).returncode == 0
    client = await connect(load_settings(env).temporal)
    handle = client.get_schedule_handle("drill:llm-inference")
    async with asyncio.timeout(120):
        while len((await handle.describe()).info.recent_actions) <= seen:
            await asyncio.sleep(0.2)
        drill_id = (await handle.describe()).info.recent_actions[-1].action.workflow_id
        while True:
            status = await asyncio.to_thread(cli, "drill", "status", drill_id, "--json", env=env)
            found = json.loads(status.stdout) if status.returncode == 0 else {}
            if found.get("ended_at") and found.get("evidence_uri") is not None and found["phases"][-1]["name"] == "evidence" \
                    and found["phases"][-1]["outcome"] != "running":
                return found
            await asyncio.sleep(0.5)


def test_scheduled_drills_and_readiness_against_the_twin(twin_factory, tmp_path):
    text = ROUTE53_RUNBOOK.read_text()
    text = text.replace("steps: [10, 25, 50, 75, 100]", "steps: [50, 100]").replace("bake: 15m", "bake: 1m")
    text = text.replace("    soak: 10m\n", "    soak: 1m\n").replace("    soak_interval: 1m\n", "    soak_interval: 20s\n")
    # An evidence bucket of its own: moto servers in one process (other tests') share state.
    text = text.replace("s3://dr-evidence/drills/", f"s3://dr-evidence-{uuid.uuid4().hex[:12]}/drills/")
    file = tmp_path / "llm-inference.yaml"
    file.write_text(text)
    twin = twin_factory(load_runbook(file), temporal=True, alertmanager=True)
    env = {**os.environ, **twin.env()}
    env.pop("COLUMNS", None)  # the tables print through a pipe, where there is no width
    assert env["DRPILOT_ALERTMANAGER_URL"] == twin.alertmanager.url
    worker = subprocess.Popen([str(DRPILOT), "worker"], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        scheduled = cli("drill", "schedule", str(file), "--cron", "0 10 * * TUE", "--blackout", "12-24..12-26", env=env)
        assert scheduled.returncode == 0, scheduled.stderr
        ran = asyncio.run(drill_from_trigger(env, 0))
        assert ran["status"] == "completed", ran["reason"]
        assert [p["name"] for p in ran["phases"]] == ["admission", "preflight", "failover", "soak", "failback", "evidence"]

        now = datetime.now(UTC)
        alert = [{"labels": {"alertname": "InferenceRegionDown", "region": "us-east-1"},
                  "startsAt": now.isoformat(), "endsAt": (now + timedelta(minutes=10)).isoformat()}]
        httpx.post(f"{twin.alertmanager.url}/api/v2/alerts", json=alert).raise_for_status()
        blocked = asyncio.run(drill_from_trigger(env, 1))
        assert blocked["status"] == "blocked" and blocked["firing_alerts"] == ["InferenceRegionDown"]

        schedules = cli("drill", "list", env=env)
        assert schedules.returncode == 0, schedules.stderr
        assert_whole(schedules.stdout, "drill:llm-inference", "0 10 * * 2")  # the server keeps cron as a calendar
        listing = cli("status", env=env)
        assert listing.returncode == 0, listing.stderr
        assert_whole(listing.stdout, "outcome", "started", ran["drill_id"])

        history = cli("drill", "history", str(file), env=env)
        assert history.returncode == 0, history.stderr
        assert_whole(history.stdout, "preflight s", "failover s", "failback s", "cleanup s", "RTO@1 s", "objective", "rehearsal")
        rows = [line.split() for line in history.stdout.splitlines() if line.strip().startswith("20")]
        assert [r[3] for r in rows] == ["completed", "blocked"]
        # started, mode, status, then preflight, failover, soak, failback, cleanup seconds
        assert all(float(x) > 0 for x in rows[0][5:8]) and rows[0][8] == "-"
        assert cli("drill", "delete", "llm-inference", env=env).returncode == 0

        ready = cli("readiness", str(file), env=env)
        assert ready.returncode == 0, ready.stdout + ready.stderr
        details = [c["detail"] for c in json.loads(cli("readiness", str(file), "--json", env=env).stdout)["checks"]]
        assert_whole(ready.stdout, "check", "verdict", "detail", *details)
        standby = next(o for o in twin.seeded_artifacts.objects if o.location == "us-west-2" and o.key.endswith("manifest.json") is False)
        body = twin._s3.get_object(Bucket=standby.bucket, Key=standby.key)["Body"].read()
        twin._s3.delete_object(Bucket=standby.bucket, Key=standby.key)
        gone = cli("readiness", str(file), env=env)
        assert gone.returncode == 1
        assert f"us-west-2: {standby.model} {standby.version}" in gone.stdout and "NOT READY" in gone.stdout
        twin._s3.put_object(Bucket=standby.bucket, Key=standby.key, Body=body, ChecksumAlgorithm="SHA256")
        back = cli("readiness", str(file), env=env)
        assert back.returncode == 0, back.stdout
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(30)

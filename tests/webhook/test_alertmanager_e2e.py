"""End to end with the real Alertmanager (Debian prometheus-alertmanager): an alert posted to
its /api/v2/alerts reaches the webhook (real uvicorn, bearer token) through its webhook
receiver and starts one failover on a Temporal dev server, run by a worker on the simulated
world; 1,000 more alerts of the same group while it runs start nothing more; the alert's
resolution reaches the webhook and is recorded in the run."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from drpilot_twin.processes import Alertmanager, alertmanager_binary

from activities import contracts as c
from drpilot.domain.settings import Settings, TemporalSettings
from drpilot.webhook.app import TokenSource, Webhook
from tests.support.loopback import uvicorn_in_loop
from tests.support.runbooks import runbook
from tests.support.webhook import TOKEN, routing, rule, world_weights
from tests.support.world import World
from workflows.types import RunResult

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(alertmanager_binary() is None, reason="prometheus-alertmanager not installed (make setup)"),
]


def _alert(starts: datetime, ends: datetime | None = None, **labels: str) -> dict:
    body = {
        "labels": {"alertname": "RegionDown", "drpilot_runbook": "llm-inference", "region": "us-east-1", **labels},
        "annotations": {"summary": "us-east-1 is dark"},
        "startsAt": starts.isoformat(),
    }
    if ends is not None:
        body["endsAt"] = ends.isoformat()
    return body


async def _until(check, what: str, seconds: float = 30) -> None:
    async with asyncio.timeout(seconds):
        while not await check():
            await asyncio.sleep(0.05)


async def test_an_alert_through_alertmanager_starts_one_failover_and_its_resolution_is_recorded(
    dev_harness, tmp_path
):
    rb = runbook("llm-inference.yaml", spec__approvals__failover="never")
    world = World.normal(rb, hold=(c.DNS_APPLY, 1))  # the run stays active while the duplicates arrive
    h = dev_harness(world)
    settings = Settings(temporal=TemporalSettings(task_queue=h.task_queue), speed=100, sandbox=True)

    async def connect():
        return h.client

    webhook = Webhook(routing((rule(), rb)), settings, TokenSource(TOKEN), connect, world_weights(world))
    metric = webhook.metrics.registry.get_sample_value
    started = lambda: metric("drpilot_webhook_runs_started_total", {"runbook": "llm-inference"}) or 0  # noqa: E731
    attached = lambda: metric("drpilot_webhook_runs_attached_total", {"runbook": "llm-inference"}) or 0  # noqa: E731
    async with h.worker(), uvicorn_in_loop(webhook.app()) as url, httpx.AsyncClient(timeout=30) as http:
        am = Alertmanager(tmp_path, f"{url}/v1/alertmanager", token=TOKEN, group_wait="0s", group_interval="1s")
        await asyncio.to_thread(am.start)
        try:
            starts = datetime.now(UTC) - timedelta(minutes=5)
            assert (await http.post(f"{am.url}/api/v2/alerts", json=[_alert(starts)])).status_code == 200

            async def run_started():
                return started() == 1

            await _until(run_started, "the run to start")
            await asyncio.wait_for(world.entered.wait(), 30)
            # Distinct alerts (Alertmanager merges identical ones) in the same group.
            storm = [_alert(starts, replica=str(i)) for i in range(1000)]
            assert (await http.post(f"{am.url}/api/v2/alerts", json=storm)).status_code == 200

            async def storm_delivered():
                return attached() >= 1000

            await _until(storm_delivered, "the duplicates to reach the webhook")

            # The region comes back while the run is still going: the resolution is recorded
            # in the run (a resolved alert never starts or stops anything).
            ended = datetime.now(UTC)
            resolved = [_alert(starts, ends=ended)] + [_alert(starts, ends=ended, replica=str(i)) for i in range(1000)]
            assert (await http.post(f"{am.url}/api/v2/alerts", json=resolved)).status_code == 200

            async def resolution_recorded():
                return (metric("drpilot_webhook_alerts_resolved_total", {"runbook": "llm-inference"}) or 0) >= 1

            await _until(resolution_recorded, "the resolution to reach the webhook")
            world.release.set()
            handle = h.client.get_workflow_handle("failover:llm-inference", result_type=RunResult)
            result = await asyncio.wait_for(handle.result(), 60)
            assert result.status == "completed"
            assert started() == 1
            assert world.dns == {"us-east-1": 0, "us-west-2": 100}
            assert len(world.changes) == 1
            assert any(m.startswith("alert RegionDown resolved at ") for m in result.messages), result.messages
            assert metric("drpilot_webhook_requests_total", {"code": "401"}) is None
        finally:
            await asyncio.to_thread(am.stop)

"""Two webhook replicas behind one real Alertmanager (Debian prometheus-alertmanager) share one
circuit breaker: each runbook's alerts are routed to its own replica (a child route per
runbook), so each replica alone is under the cap, and together they start no more than it.
The replicas are two Webhook servers (each its own uvicorn on its own loopback port, its own
guardrails) in this process, on one Temporal dev server and worker."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from drpilot_twin.processes import Alertmanager, alertmanager_binary

from drpilot.domain.settings import Settings, TemporalSettings
from drpilot.webhook.app import TokenSource, Webhook
from tests.support.loopback import uvicorn_in_loop
from tests.support.runbooks import runbook
from tests.support.webhook import TOKEN, routing, rule, world_weights
from tests.support.world import World

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(alertmanager_binary() is None, reason="prometheus-alertmanager not installed (make setup)"),
]


class RoutedAlertmanager(Alertmanager):
    """Alertmanager sending each runbook's alerts to its own webhook URL (a child route
    matching the drpilot_runbook label, one receiver each)."""

    def __init__(self, state_dir: Path, replicas: dict[str, str], *, token: str):
        self.replicas = replicas
        super().__init__(state_dir, next(iter(replicas.values())), token=token, group_wait="0s", group_interval="1s")

    def config(self) -> dict:
        config = super().config()
        webhook = config["receivers"][0]["webhook_configs"][0]
        config["route"]["routes"] = [{"matchers": [f'drpilot_runbook="{rb}"'], "receiver": rb} for rb in self.replicas]
        config["receivers"] += [{"name": rb, "webhook_configs": [{**webhook, "url": url}]} for rb, url in self.replicas.items()]
        return config


async def test_two_webhook_replicas_behind_one_alertmanager_start_no_more_than_the_breakers_cap(dev_harness, tmp_path):
    east = runbook("llm-inference.yaml")  # an alert's run waits for approval: both stay active
    gcp = runbook("llm-inference-clouddns.yaml")
    world = World.normal(east)
    h = dev_harness(world)
    settings = Settings(temporal=TemporalSettings(task_queue=h.task_queue), speed=100, sandbox=True)
    routes = routing((rule(), east), (rule("llm-inference-gcp"), gcp), max_runs=1, window="1h")

    async def connect():
        return h.client

    replicas = [Webhook(routes, settings, TokenSource(TOKEN), connect, world_weights(world)) for _ in range(2)]

    def decided(webhook: Webhook) -> float:
        samples = webhook.metrics.registry.get_sample_value
        return (samples("drpilot_webhook_alerts_matched_total", {"rule": "llm-inference-region-down"}) or 0) + (
            samples("drpilot_webhook_alerts_matched_total", {"rule": "llm-inference-gcp-region-down"}) or 0
        )

    async with h.worker(), uvicorn_in_loop(replicas[0].app()) as one, uvicorn_in_loop(replicas[1].app()) as two:
        am = RoutedAlertmanager(
            tmp_path, {"llm-inference": f"{one}/v1/alertmanager", "llm-inference-gcp": f"{two}/v1/alertmanager"}, token=TOKEN
        )
        await asyncio.to_thread(am.start)
        try:
            starts = (datetime.now(UTC) - timedelta(minutes=5)).isoformat()
            alerts = [
                {"labels": {"alertname": "RegionDown", "drpilot_runbook": rb, "region": region}, "startsAt": starts}
                for rb, region in (("llm-inference", "us-east-1"), ("llm-inference-gcp", "us-central1"))
            ]
            async with httpx.AsyncClient(timeout=30) as http:
                assert (await http.post(f"{am.url}/api/v2/alerts", json=alerts)).status_code == 200
            async with asyncio.timeout(60):  # each replica decided its runbook's alert
                while not all(decided(w) >= 1 for w in replicas):
                    await asyncio.sleep(0.05)
            started = [
                w.metrics.registry.get_sample_value("drpilot_webhook_runs_started_total", {"runbook": rb}) or 0
                for w, rb in zip(replicas, ("llm-inference", "llm-inference-gcp"), strict=True)
            ]
            refused = [
                w.metrics.registry.get_sample_value(
                    "drpilot_webhook_alerts_refused_total", {"outcome": "notify-only", "reason": "circuit_breaker"}
                ) or 0
                for w in replicas
            ]
            assert sorted(started) == [0, 1], started  # at most 1 an hour, across both replicas
            assert sorted(refused) == [0, 1], refused
            assert [w for w, s in zip(replicas, started, strict=True) if s == 0] == [
                w for w, r in zip(replicas, refused, strict=True) if r == 1
            ]
        finally:
            await asyncio.to_thread(am.stop)
            for webhook in replicas:
                await webhook.aclose()

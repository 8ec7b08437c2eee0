"""Webhook tests: the ASGI app in process (httpx.ASGITransport), a real Temporal server
(time-skipping, from tests/workflows) with a worker running the real workflows on the
simulated world, and the webhook reading that world's DNS."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from drpilot.domain.runbook import Runbook
from drpilot.domain.settings import Settings, TemporalSettings
from drpilot.webhook.app import PATH, TokenSource, Webhook
from drpilot.webhook.guardrails import KillSwitch
from drpilot.webhook.rules import CircuitBreaker, Route, Routing, Rule
from tests.support.loopback import uvicorn_on_loopback  # noqa: F401  (the webhook's HTTP tests use it from here)
from tests.workflows.conftest import Harness, env, harness, runbook  # noqa: F401  (fixtures)
from tests.workflows.world import World

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@dataclass
class Clock:
    """The webhook's clock, moved by the test (cooldown, breaker window, firing time)."""

    now: datetime = field(default_factory=lambda: datetime.now(UTC))

    def __call__(self) -> datetime:
        return self.now

    def advance(self, by: timedelta) -> None:
        self.now += by


def rule(runbook_name: str = "llm-inference", **changes: Any) -> Rule:
    data = {
        "name": f"{runbook_name}-region-down",
        "match": ['alertname="RegionDown"', f'drpilot_runbook="{runbook_name}"'],
        "runbook": f"{runbook_name}.yaml",
        "for": "0s",
        **changes,
    }
    return Rule.model_validate(data)


def routing(*routes: tuple[Rule, Runbook], max_runs: int = 3, window: str = "1h") -> Routing:
    return Routing(
        routes=[Route(r, rb, r.matchers()) for r, rb in routes],
        breaker=CircuitBreaker.model_validate({"max_runs": max_runs, "window": window}),
    )


def alert(
    region: str = "us-east-1", *, runbook_name: str = "llm-inference", status: str = "firing",
    starts: datetime | None = None, fingerprint: str = "a1b2c3", alertname: str = "RegionDown", **labels: str,
) -> dict:
    starts = starts or datetime.now(UTC) - timedelta(minutes=10)
    return {
        "status": status,
        "labels": {"alertname": alertname, "drpilot_runbook": runbook_name, "region": region, **labels},
        "annotations": {"summary": f"{region} is down"},
        "startsAt": starts.isoformat().replace("+00:00", "Z"),
        "endsAt": "2026-01-01T00:10:00Z" if status == "resolved" else "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus.local/graph",
        "fingerprint": fingerprint,
    }


def notification(*alerts: dict) -> dict:
    status = "firing" if any(a["status"] == "firing" for a in alerts) else "resolved"
    return {
        "version": "4", "groupKey": '{}:{alertname="RegionDown"}', "truncatedAlerts": 0, "status": status,
        "receiver": "drpilot", "groupLabels": {"alertname": "RegionDown"}, "commonLabels": {},
        "commonAnnotations": {}, "externalURL": "http://alertmanager.local", "alerts": list(alerts),
    }


@dataclass
class Served:
    webhook: Webhook
    http: httpx.AsyncClient
    world: World
    harness: Harness
    clock: Clock
    env: Any

    async def post(self, *alerts: dict) -> httpx.Response:
        return await self.http.post(PATH, json=notification(*alerts), headers=AUTH)

    async def decisions(self, *alerts: dict) -> list[dict]:
        response = await self.post(*alerts)
        assert response.status_code == 200, response.text
        return response.json()["alerts"]

    def metric(self, name: str, **labels: str) -> float:
        return self.webhook.metrics.registry.get_sample_value(name, labels or None) or 0.0


def world_weights(world: World):
    async def read(rb: Runbook) -> dict[str, int]:
        return dict(world.dns)

    return read


@pytest.fixture
def serve(env, harness):  # noqa: F811  (the imported fixtures)
    @asynccontextmanager
    async def make(
        world: World, routes: Routing, *, environ: dict[str, str] | None = None, kill_file: Path | None = None,
        clock: Clock | None = None, dns=None,
    ) -> AsyncIterator[Served]:
        h = harness(world)
        clock = clock or Clock()
        settings = Settings(temporal=TemporalSettings(task_queue=h.task_queue))

        async def connect():
            return h.client

        webhook = Webhook(
            routes, settings, TokenSource(TOKEN), connect, dns or world_weights(world),
            kill_switch=KillSwitch(kill_file, env=environ or {}), clock=clock,
        )
        async with h.worker():
            transport = httpx.ASGITransport(app=webhook.app())
            async with httpx.AsyncClient(transport=transport, base_url="http://webhook", timeout=60) as http:
                yield Served(webhook, http, world, h, clock, env)

    return make


@asynccontextmanager
async def uvicorn_in_loop(app) -> AsyncIterator[str]:
    """A real uvicorn serving `app` on 127.0.0.1 (a free port) in this event loop, where the
    Temporal client the app uses lives; its base URL."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None, access_log=False, lifespan="off"))
    task = asyncio.create_task(server.serve())
    async with asyncio.timeout(10):
        while not server.started:
            assert not task.done(), "uvicorn did not start"
            await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)

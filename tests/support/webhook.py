"""The webhook's inputs and its test double of a clock: the Alertmanager notifications it
receives, the routing rules it reads, and the webhook served on a worker of the simulated
world (`Served`, what the `serve` fixture of tests/webhook yields)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from drpilot.domain.runbook import Runbook
from drpilot.webhook.app import PATH, Webhook
from drpilot.webhook.rules import CircuitBreaker, Route, Routing, Rule
from tests.support.temporal import Harness
from tests.support.world import World

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

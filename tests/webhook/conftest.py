"""Webhook tests: the ASGI app in process (httpx.ASGITransport), a real Temporal server
(time-skipping, `env` in tests/conftest.py) with a worker running the real workflows on the
simulated world, and the webhook reading that world's DNS."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest

from drpilot.domain.settings import Settings, TemporalSettings
from drpilot.webhook.app import TokenSource, Webhook
from drpilot.webhook.guardrails import KillSwitch
from drpilot.webhook.rules import Routing
from tests.support.webhook import TOKEN, Clock, Served, world_weights
from tests.support.world import World


@pytest.fixture
def serve(env, harness):
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
            try:
                async with httpx.AsyncClient(transport=transport, base_url="http://webhook", timeout=60) as http:
                    yield Served(webhook, http, world, h, clock, env)
            finally:
                await webhook.aclose()

    return make

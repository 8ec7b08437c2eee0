"""Console tests: the real app on a real uvicorn on 127.0.0.1 (in the test's event loop, where
the Temporal client lives), a time-skipping Temporal server with a worker running the real
workflows on the simulated world, identities sent as the SSO proxy would (the header, from
127.0.0.1, the one trusted proxy), and a policy file written for the test."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from activities.artifacts.stores import build_stores
from drpilot.console.app import Console
from drpilot.console.board import DnsWeights
from drpilot.console.identity import IdentitySource
from drpilot.console.policy import parse_policy
from drpilot.console.slack import SlackPeople
from drpilot.domain.runbook import Runbook
from drpilot.domain.settings import Settings, TemporalSettings
from tests.support.aws import aws_client
from tests.support.console import POLICY, Served
from tests.support.loopback import uvicorn_in_loop
from tests.support.webhook import world_weights
from tests.support.world import World


@pytest.fixture
def serve_console(env, harness, request):
    @asynccontextmanager
    async def make(world: World, *runbooks: Runbook, policy: str = POLICY, slack: tuple[str, SlackPeople] | None = None,
                   s3: Any = None, dns_weights: DnsWeights | None = None) -> AsyncIterator[Served]:
        h = harness(world)
        settings = Settings(temporal=TemporalSettings(task_queue=h.task_queue))

        async def connect():
            return h.client

        if s3 is None:  # the board reads the evidence packs (the RTO trend) of every runbook: from moto, never AWS
            s3 = aws_client("s3", request.getfixturevalue("moto").url)
        identity = IdentitySource.configure(header="X-Forwarded-Email", trusted_proxies=["127.0.0.1"], dev=None, host="127.0.0.1")
        console = Console.build(
            connect, settings, {rb.name: rb for rb in runbooks}, dns_weights or world_weights(world), identity, parse_policy(policy, "policy.yaml"),
            slack, lambda: build_stores(s3, lambda: None),
        )
        async with h.worker(), uvicorn_in_loop(console.app()) as url, httpx.AsyncClient(base_url=url, timeout=30) as http:
            yield Served(console, http, h, env)

    return make

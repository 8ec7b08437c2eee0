"""What the console tests share: the policy they run under and the served console."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
from temporalio.testing import WorkflowEnvironment

from drpilot.console.app import Console
from tests.support.temporal import Harness
from workflows.types import RunResult

POLICY = """\
grants:
  - who: [alice@example.com, group:oncall]
    may: [view, approve, start, abort]
    runbooks: ["llm-*"]
  - who: [carol@example.com]
    may: [view]
    runbooks: ["*"]
groups:
  oncall: [bob@example.com]
"""


@dataclass
class Served:
    console: Console
    http: httpx.AsyncClient
    harness: Harness
    env: WorkflowEnvironment

    @staticmethod
    def as_(who: str, *, action: bool = False) -> dict[str, str]:
        headers = {"X-Forwarded-Email": who}
        if action:
            headers["X-Drpilot-Action"] = "1"
        return headers

    async def result(self, run_id: str) -> RunResult:
        """The run's result, the test server skipping time meanwhile (as a started handle's would)."""
        async with self.env.time_skipping_unlocked():
            return await self.harness.client.get_workflow_handle(run_id, result_type=RunResult).result()

    async def act(self, who: str, path: str, body: dict[str, Any] | None = None) -> httpx.Response:
        return await self.http.post(path, json=body or {}, headers=self.as_(who, action=True))

    async def board(self, who: str) -> list[dict[str, Any]]:
        """`GET /api/runbooks` once every runbook's slow facts were read (the board reads them in
        the background: the first answers say "reading")."""
        async with asyncio.timeout(30):
            while True:
                rows = (await self.http.get("/api/runbooks", headers=self.as_(who))).json()["runbooks"]
                if not any(row["reading"] for row in rows):
                    return rows
                await asyncio.sleep(0.05)


async def next_event(lines: AsyncIterator[str]) -> dict:
    """The next Server-Sent Event's data."""
    async for line in lines:
        if line.startswith("data: "):
            return json.loads(line.removeprefix("data: "))
    raise AssertionError("the stream ended")

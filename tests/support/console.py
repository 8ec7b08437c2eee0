"""What the console tests share: the policy they run under and the served console."""

from __future__ import annotations

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

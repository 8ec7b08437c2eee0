"""Drills on the simulated world: a worker that runs DrillWorkflow with its real failover,
failback and admission, a real Alertmanager for the blocking alerts and moto's S3 for the
evidence packs (the fixtures, imported by the conftests of the folders that run drills)."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from drpilot_twin.processes import Alertmanager
from temporalio.client import Client, WorkflowHandle
from temporalio.worker import Worker

from activities.drills import DrillActivities
from activities.front_door import FrontDoorActivities
from drpilot.domain.runbook import Runbook
from drpilot.domain.settings import Settings, TemporalSettings
from drpilot.frontdoor.drills import DrillAdmission
from tests.support.aws import aws_client
from tests.support.runbooks import runbook
from tests.support.temporal import WORKFLOWS
from tests.support.world import World
from workflows import admission
from workflows.admission import AdmissionWorkflow
from workflows.drill import DrillWorkflow
from workflows.types import AdmissionState, DrillInput, DrillResult

BUCKET = "dr-evidence"


@pytest.fixture(scope="module")
def alertmanager(tmp_path_factory) -> Iterator[Alertmanager]:
    am = Alertmanager(tmp_path_factory.mktemp("am"), "http://127.0.0.1:9/unused")
    am.start()
    yield am
    am.stop()


@pytest.fixture(scope="module")
def s3(moto) -> object:
    """moto's S3 (the `moto` fixture) with the evidence bucket."""
    client = aws_client("s3", moto.url)
    client.create_bucket(Bucket=BUCKET)
    return client


def fire(am: Alertmanager, name: str, minutes: float = 30) -> None:
    now = datetime.now(UTC)
    body = [{"labels": {"alertname": name, "region": "us-east-1"},
             "startsAt": (now - timedelta(minutes=1)).isoformat(), "endsAt": (now + timedelta(minutes=minutes)).isoformat()}]
    httpx.post(f"{am.url}/api/v2/alerts", json=body).raise_for_status()


def resolve(am: Alertmanager, name: str) -> None:
    fire(am, name, minutes=-0.5)  # endsAt in the past: resolved


def drill_runbook(am: Alertmanager, **changes) -> Runbook:
    return runbook("llm-inference.yaml", **{
        "spec__drills__alertmanager": am.url, "spec__drills__evidence": f"s3://{BUCKET}/drills/",
        "spec__drills__soak": "10m", "spec__drills__soak_interval": "1m", **changes,
    })


class Drills:
    def __init__(self, client: Client, world: World, s3, *, sandbox: bool = True):
        self.client = client
        self.world = world
        self.task_queue = f"drill-{uuid.uuid4()}"
        self.settings = Settings(temporal=TemporalSettings(task_queue=self.task_queue), sandbox=sandbox)
        self.s3 = s3

    @asynccontextmanager
    async def worker(self) -> AsyncIterator[Worker]:
        activities = [
            *self.world.activities(),
            *DrillActivities(self.s3, self.settings).all(),
            *FrontDoorActivities(admit=DrillAdmission(self.client, self.settings).admit).all(),
        ]
        with ThreadPoolExecutor(8) as pool:
            async with Worker(
                self.client, task_queue=self.task_queue, workflows=[*WORKFLOWS, DrillWorkflow], activities=activities,
                activity_executor=pool, max_heartbeat_throttle_interval=timedelta(milliseconds=50),
                default_heartbeat_throttle_interval=timedelta(milliseconds=50),
            ) as worker:
                try:
                    yield worker
                finally:
                    self.world.release.set()

    async def start(self, rb: Runbook, **kw) -> WorkflowHandle:
        request = DrillInput(runbook=rb, from_region="us-east-1", requested_by="tester", **kw)
        return await self.client.start_workflow(
            DrillWorkflow.run, request, id=f"drill:{rb.name}-{uuid.uuid4()}", task_queue=self.task_queue
        )

    async def held(self, rb: Runbook, **kw) -> WorkflowHandle:
        """Start a drill and wait until it is inside the world's held activity."""
        handle = await self.start(rb, **kw)
        await asyncio.wait_for(self.world.entered.wait(), 30)
        return handle

    async def admission(self) -> AdmissionState:
        handle = self.client.get_workflow_handle(admission.workflow_id(self.task_queue))
        return await handle.query(AdmissionWorkflow.state, result_type=AdmissionState)

    def evidence(self, result: DrillResult) -> DrillResult:
        assert result.evidence_uri.startswith(f"s3://{BUCKET}/drills/{result.runbook}/"), result.evidence_uri
        key = result.evidence_uri.removeprefix(f"s3://{BUCKET}/")
        return DrillResult.model_validate(json.loads(self.s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()))

"""runbooks/llm-platform.yaml's failover end to end against the twin: the real worker (in
process) and real activities, one block of every kind. The registry database's writer moves
to the target before DNS does, a person other than the starter confirms, the flags service
hears one request, the region left drains its consumers (a Job) and stops its writers."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from drpilot.domain.loader import load_runbook
from drpilot.domain.settings import load_settings
from drpilot.frontdoor.dry_run import plan_failover
from drpilot.frontdoor.temporal import connect
from drpilot.frontdoor.worker import run_worker
from tests.support.paths import RUNBOOKS
from tests.support.runs import wait_for
from workflows.failover import FailoverWorkflow
from workflows.types import ApproveInput, FailoverInput, RunResult

pytestmark = pytest.mark.e2e
HOME, DR = "us-east-1", "us-west-2"
PLATFORM = RUNBOOKS / "llm-platform.yaml"


async def test_the_platform_fails_over_with_every_block_kind(twin_factory, monkeypatch):
    runbook = load_runbook(PLATFORM)
    twin = twin_factory(PLATFORM, temporal=True, speed=300)
    for key, value in twin.env().items():
        monkeypatch.setenv(key, value)
    settings = load_settings()
    plan = plan_failover(runbook, HOME, None, settings)  # `drpilot runbook plan`: each block, and the writer now
    lines = [line for line in plan.changes if line.startswith("block ")]
    assert [line.split(" ")[1] for line in lines] == ["registry-db", "dba-confirms", "flags", "drain-consumers", "stop-writers"]
    assert lines[0].endswith(f"now: writer {HOME}, {DR}'s lag 0.05s"), lines[0]
    stop = asyncio.Event()
    worker = asyncio.create_task(run_worker(settings, stop=stop))
    try:
        client = await connect(settings.temporal)
        handle = await client.start_workflow(
            FailoverWorkflow.run,
            FailoverInput(runbook=runbook, failed_region=HOME, trigger="cli", requested_by="alice", speed=settings.speed),
            id=f"failover:{runbook.name}:{uuid.uuid4()}", task_queue=settings.temporal.task_queue, result_type=RunResult,
        )
        waiting = await wait_for(handle, lambda p: p.waiting_for == "approval", timeout=60)
        assert twin.status()["databases"]["mlflow-global"]["writer"] == DR  # prepare: before DNS moves
        assert twin.weights() == {HOME: 100, DR: 0} and waiting.phase == "block:dba-confirms"
        await handle.execute_update(FailoverWorkflow.approve, ApproveInput(by="dba"))
        result = await handle.result()
    finally:
        stop.set()
        await worker
    assert result.status == "completed", result.messages
    assert twin.weights() == {HOME: 0, DR: 100}
    steps = {p.name: p for p in result.phases}
    assert all(steps[f"block:{b.name}"].outcome == "ok" for b in runbook.spec.blocks)
    assert "writer us-east-1 -> us-west-2 (switchover" in steps["block:registry-db"].detail
    effects = twin.receiver.received.effects
    assert [(e.block, e.body) for e in effects] == [("flags", {"serving": DR})]
    assert "completed" in steps["block:drain-consumers"].detail
    assert twin.clusters[HOME].deployment("ingest", "queue-writer")["spec"]["replicas"] == 0

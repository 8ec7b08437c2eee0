"""The worker's /healthz, /readyz and /metrics, served by the real `run_worker` on a real
Temporal dev server, and drpilot's run metrics scraped from that same endpoint."""

from __future__ import annotations

import asyncio
import os
import socket
import sysconfig
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from temporalio import workflow
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from drpilot.domain.settings import Settings, TemporalSettings
from drpilot.frontdoor.health import WorkerHealth, metrics_runtime, serving
from drpilot.frontdoor.ports import free_loopback_port
from drpilot.frontdoor.worker import run_worker

with workflow.unsafe.imports_passed_through():
    from workflows.metrics import record_result
    from workflows.types import PhaseRecord, RunResult, WorldState

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
async def dev_server() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(Path(sysconfig.get_path("scripts")) / "temporal"),
        data_converter=pydantic_data_converter,
        ip="127.0.0.1",
    )
    yield env
    await env.shutdown()


async def get_until(url: str, status: int, seconds: float = 20.0) -> httpx.Response:
    """GET `url` until it answers `status` (the worker is starting); the last reply otherwise."""
    deadline = asyncio.get_running_loop().time() + seconds
    async with httpx.AsyncClient(timeout=5.0) as http:
        while True:
            try:
                reply = await http.get(url)
                if reply.status_code == status or asyncio.get_running_loop().time() > deadline:
                    return reply
            except httpx.TransportError:
                if asyncio.get_running_loop().time() > deadline:
                    raise
            await asyncio.sleep(0.1)


def address(env: WorkflowEnvironment) -> str:
    return env.client.service_client.config.target_host


async def test_worker_serves_health_readiness_and_sdk_metrics(dev_server):
    listen = f"127.0.0.1:{free_loopback_port()}"
    settings = Settings(
        temporal=TemporalSettings(address=address(dev_server), task_queue=f"health-{uuid.uuid4()}"),
        health_listen=listen,
    )
    stop = asyncio.Event()
    worker = asyncio.create_task(run_worker(settings, stop=stop))
    try:
        assert (await get_until(f"http://{listen}/healthz", 200)).text == "ok\n"
        ready = await get_until(f"http://{listen}/readyz", 200)
        assert (ready.status_code, ready.text) == (200, "ok\n")
        metrics = await get_until(f"http://{listen}/metrics", 200)
        assert metrics.headers["content-type"].startswith("text/plain; version=0.0.4")
        # The SDK's own series, from the worker's runtime (its pollers have polled).
        assert "temporal_num_pollers" in metrics.text
        assert f'task_queue="{settings.temporal.task_queue}"' in metrics.text
    finally:
        stop.set()
        await asyncio.wait_for(worker, 60)


async def test_readyz_is_503_when_temporal_does_not_answer_or_pollers_stopped():
    # A client that has never reached a server: a port nobody listens on.
    unreachable = await Client.connect(f"127.0.0.1:{free_loopback_port()}", lazy=True)
    metrics = metrics_runtime()
    async with serving(WorkerHealth(unreachable, lambda: True, metrics.address), "127.0.0.1:0") as listening:
        down = await get_until(f"http://{listening}/readyz", 503, seconds=1)
        assert down.status_code == 503
        assert down.text.startswith("Temporal does not answer: ")
        assert (await get_until(f"http://{listening}/healthz", 200)).status_code == 200
    async with serving(WorkerHealth(unreachable, lambda: False, metrics.address), "127.0.0.1:0") as listening:
        stopped = await get_until(f"http://{listening}/readyz", 503, seconds=1)
        assert (stopped.status_code, stopped.text) == (503, "worker pollers are not running\n")


# --------------------------------------------------------------------- drpilot run metrics
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def a_result(status: str) -> RunResult:
    """A rolled-back failover rehearsed at speed 10: 42 s of RTO are 420 s unscaled."""
    return RunResult(
        run_id="failover:llm-inference",
        status=status,
        phases=[
            PhaseRecord(name="preflight", started_at=T0, ended_at=T0 + timedelta(seconds=2), outcome="ok"),
            PhaseRecord(name="health-gate", started_at=T0, ended_at=T0 + timedelta(seconds=30), outcome="failed"),
            PhaseRecord(name="compensation", started_at=T0, ended_at=None, outcome="running"),
        ],
        rto_seconds=42.0,
        objective_rto_seconds=300.0,
        final_state=WorldState(),
        speed=10.0,
        rto_seconds_unscaled=420.0,
        action="failover",
        runbook="llm-inference",
        weights_applied=[{"us-east-1": 0, "us-west-2": 100}, {"us-east-1": 100, "us-west-2": 0}],
    )


# Unsandboxed only because this test module imports what a sandbox refuses (httpx, the
# worker); the real workflows import workflows.metrics inside the sandbox.
@workflow.defn(sandboxed=False)
class RecordsAResult:
    @workflow.run
    async def run(self, status: str) -> None:
        record_result(a_result(status))
        # A timer after: the worker below keeps no workflow cached, so the next task replays
        # the history from the start, record_result included; replay must record nothing.
        await workflow.sleep(0.01)


def series(text: str, name: str, **labels: str) -> float | None:
    """The value of the one sample of `name` whose labels include `labels`."""
    found = []
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        head, _, value = line.rpartition(" ")
        if all(f'{k}="{v}"' in head for k, v in labels.items()):
            found.append(float(value))
    assert len(found) <= 1, f"{name} {labels}: {found}"
    return found[0] if found else None


async def test_record_result_is_scraped_from_the_worker_metrics_endpoint(dev_server):
    metrics = metrics_runtime()
    client = await Client.connect(
        address(dev_server), runtime=metrics.runtime, data_converter=pydantic_data_converter
    )
    queue = f"metrics-{uuid.uuid4()}"
    async with Worker(client, task_queue=queue, workflows=[RecordsAResult], max_cached_workflows=0) as worker:
        await client.execute_workflow(RecordsAResult.run, "rolled_back", id=f"m-{queue}", task_queue=queue)
        health = WorkerHealth(client, lambda: worker.is_running, metrics.address)
        async with serving(health, "127.0.0.1:0") as listening:
            text = (await get_until(f"http://{listening}/metrics", 200)).text
    run = {"runbook": "llm-inference", "action": "failover"}
    # Once, though the workflow code ran twice (first execution, then the replay).
    assert series(text, "temporal_workflow_task_replay_latency_count", workflow_type="RecordsAResult") is not None
    assert series(text, "drpilot_runs_total", status="rolled_back", **run) == 1
    assert series(text, "drpilot_dns_changes_total", **run) == 2
    assert series(text, "drpilot_health_gates_total", phase="health-gate", outcome="failed", **run) == 1
    # Unscaled: 30 s at speed 10 were 300 s of a real run; an unfinished phase is not timed.
    assert series(text, "drpilot_phase_duration_seconds_sum", phase="health-gate", **run) == 300
    assert series(text, "drpilot_phase_duration_seconds_count", phase="compensation", **run) is None
    # Buckets that fit phases of minutes (the SDK's default stops at 10 s).
    assert series(text, "drpilot_phase_duration_seconds_bucket", phase="health-gate", le="300", **run) == 1
    assert series(text, "drpilot_phase_duration_seconds_bucket", phase="health-gate", le="120", **run) == 0
    assert series(text, "drpilot_rto_seconds", **run) == 420
    assert series(text, "drpilot_rto_objective_seconds", **run) == 300
    assert series(text, "drpilot_rto_missed_total", **run) == 1


async def test_worker_cli_names_a_health_port_it_cannot_listen_on(dev_server):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        listen = f"127.0.0.1:{taken.getsockname()[1]}"
        env = {**os.environ, "DRPILOT_TEMPORAL_ADDRESS": address(dev_server), "DRPILOT_HEALTH_LISTEN": listen}
        worker = await asyncio.create_subprocess_exec(
            str(Path(sysconfig.get_path("scripts")) / "drpilot"), "worker", env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        _, stderr = await asyncio.wait_for(worker.communicate(), 60)
    assert worker.returncode == 1
    assert "Traceback" not in stderr.decode()
    assert stderr.decode().strip().splitlines()[-1] == (
        f"error: DRPILOT_HEALTH_LISTEN={listen!r}: cannot listen there (Address already in use)"
    )

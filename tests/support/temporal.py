"""The Temporal side of the tests: the time-skipping test server and the dev server, a worker
on a fresh task queue serving the simulated world (tests/support/world.py), and the saved histories the
replay test reads."""

from __future__ import annotations

import asyncio
import os
import sysconfig
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.client import Client, WorkflowHandle
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from drpilot import __version__
from drpilot.frontdoor.keepalive import HeartbeatKeepalive
from tests.support.paths import ROOT
from tests.support.world import World
from workflows.admission import AdmissionWorkflow
from workflows.failback import FailbackWorkflow
from workflows.failover import FailoverWorkflow
from workflows.types import SEARCH_ATTRIBUTES, Progress

HISTORIES = ROOT / "tests" / "workflows" / "histories"
# DRPILOT_SAVE_HISTORIES=1 rewrites the committed histories the replay test reads.
SAVE_HISTORIES = os.environ.get("DRPILOT_SAVE_HISTORIES") == "1"
WORKFLOWS = [FailoverWorkflow, FailbackWorkflow, AdmissionWorkflow]


async def start_env() -> WorkflowEnvironment:
    server = Path(sysconfig.get_path("scripts")) / "temporal-test-server"
    environment = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=str(server), data_converter=pydantic_data_converter
    )
    # As a production namespace has them registered (README "Production deployment").
    await environment.client.operator_service.add_search_attributes(
        AddSearchAttributesRequest(
            namespace=environment.client.namespace,
            search_attributes={k.name: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD for k in SEARCH_ATTRIBUTES},
        )
    )
    return environment


async def start_dev_env() -> WorkflowEnvironment:
    server = Path(sysconfig.get_path("scripts")) / "temporal"
    return await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(server), data_converter=pydantic_data_converter,
        ip="127.0.0.1", ui=False, search_attributes=SEARCH_ATTRIBUTES,
    )


class Harness:
    """A worker on a fresh task queue serving one world."""

    def __init__(self, client: Client, world: World):
        # Heartbeats go out at once, so a held activity hears its cancellation promptly.
        self.client = client
        self.world = world
        self.task_queue = f"wf-{uuid.uuid4()}"

    @asynccontextmanager
    async def worker(self) -> AsyncIterator[Worker]:
        async with Worker(
            self.client,
            task_queue=self.task_queue,
            workflows=WORKFLOWS,
            activities=self.world.activities(),
            max_heartbeat_throttle_interval=timedelta(milliseconds=50),
            default_heartbeat_throttle_interval=timedelta(milliseconds=50),
            interceptors=[HeartbeatKeepalive()],  # as drpilot's worker: activities heartbeat while blocked
        ) as worker:
            try:
                yield worker
            finally:
                self.world.release.set()  # a failed test must not leave an activity held

    async def start(self, workflow_run: Any, arg: Any, workflow_id: str | None = None) -> WorkflowHandle:
        action = "failover" if workflow_run is FailoverWorkflow.run else "failback"
        return await self.client.start_workflow(
            workflow_run,
            arg,
            id=workflow_id or f"{action}:{arg.runbook.name}:{uuid.uuid4()}",
            task_queue=self.task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        )

    async def run(self, workflow_run: Any, arg: Any) -> tuple[Any, WorkflowHandle]:
        """Start a run on this world and wait for its result, a worker serving it meanwhile."""
        async with self.worker():
            handle = await self.start(workflow_run, arg)
            return await handle.result(), handle


def harnesses_on(environment: WorkflowEnvironment) -> Callable[[World], Harness]:
    """What the harness fixtures give a test: a Harness on `environment` for each world."""

    def make(world: World) -> Harness:
        return Harness(environment.client, world)

    return make


async def only_held_activity_pending(handle, world: World, phase: str | None = None) -> None:
    """Wait until the held activity is the run's only pending one (and, given `phase`, the
    phase holding it is the only one still running).

    The time-skipping test server fails a workflow task that cancels an activity which
    completed while that task was running (temporalio/sdk-java#2391; the real server
    accepts it), which parallel branches do on abort; the server then keeps time locked and
    the run never ends. Waiting until no sibling can complete any more keeps these tests
    about the workflow, not that race. A sibling branch that runs activities in sequence
    (failback's restore: Velero, then scale) has a moment with none pending between two of
    them: only its phase being closed shows it is done."""
    await asyncio.wait_for(world.entered.wait(), 20)
    async with asyncio.timeout(20):
        while True:
            pending = len((await handle.describe()).raw_description.pending_activities)
            if pending == 1 and phase is None:
                return
            if pending == 1:
                progress = await handle.query("progress", result_type=Progress)
                if [p.name for p in progress.phases if p.outcome == "running"] == [phase]:
                    return
            await asyncio.sleep(0.02)


async def keep_history(handle: WorkflowHandle, name: str) -> None:
    """Write the run's history for the replay test when asked to regenerate them."""
    if SAVE_HISTORIES:
        history = await handle.fetch_history()
        (HISTORIES / __version__).mkdir(parents=True, exist_ok=True)
        (HISTORIES / __version__ / f"{name}.json").write_text(history.to_json())

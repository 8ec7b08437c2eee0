"""`drpilot worker`: runs the procedures (workflows) and their steps (activities).

Activities are sync (boto3, kubernetes): they run on a thread pool. SIGINT / SIGTERM stop
polling, let running activities finish or heartbeat out, then exit; Temporal hands any
unfinished work to another worker, so a worker is safe to restart at any point.
"""

from __future__ import annotations

import asyncio
import signal
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import structlog
from temporalio import activity
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import (
    AddSearchAttributesRequest,
    ListSearchAttributesRequest,
)
from temporalio.client import Client
from temporalio.service import RPCError
from temporalio.worker import (
    ActivityInboundInterceptor,
    ExecuteActivityInput,
    Interceptor,
    Worker,
)

from activities.registry import build_activities
from drpilot.domain.settings import Settings
from drpilot.frontdoor.drills import DrillAdmission
from drpilot.frontdoor.health import WorkerHealth, metrics_runtime, serving
from drpilot.frontdoor.keepalive import HeartbeatKeepalive
from drpilot.frontdoor.logs import get_logger
from drpilot.frontdoor.readiness import ReadinessHistory
from drpilot.frontdoor.temporal import TemporalUnavailable, connect
from workflows.admission import AdmissionWorkflow
from workflows.drill import DrillWorkflow
from workflows.failback import FailbackWorkflow
from workflows.failover import FailoverWorkflow
from workflows.readiness import ReadinessWorkflow
from workflows.types import SEARCH_ATTRIBUTES

WORKFLOWS = [FailoverWorkflow, FailbackWorkflow, AdmissionWorkflow, DrillWorkflow, ReadinessWorkflow]
# Long activities mostly wait on providers; threads are cheap, a starved pool delays heartbeats.
ACTIVITY_THREADS = 32
# A lost worker's workflow tasks wait this long on its sticky queue before any worker may take
# them (the SDK's default is 10 s); the cost of a move is one replay of the run's history.
STICKY_SECONDS = 3
# Heartbeats reach Temporal at most this often (the SDK's throttle is 0.8 of the heartbeat
# timeout): with workflows/calls.py HEARTBEAT at 10 s, one late heartbeat is no timeout.
HEARTBEAT_THROTTLE_SECONDS = 4


class RunLogContext(Interceptor):
    """Binds the run (workflow id, run id), the activity and its attempt into structlog's
    context for every activity, so each log line says which run it belongs to, and logs one
    line per activity execution with its outcome and duration."""

    def __init__(self, log: Any = None):
        self.log = log

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _ActivityLogContext(next, self.log)


class _ActivityLogContext(ActivityInboundInterceptor):
    def __init__(self, next: ActivityInboundInterceptor, log: Any):
        super().__init__(next)
        self.log = log

    async def execute_activity(self, input: ExecuteActivityInput) -> object:
        info = activity.info()
        log = self.log or get_logger()
        # Bound in this task's context; sync activities run in a copy of it (the SDK
        # copies contextvars into the thread pool).
        with structlog.contextvars.bound_contextvars(
            run=info.workflow_id, run_id=info.workflow_run_id, activity=info.activity_type, attempt=info.attempt
        ):
            started = loop_time()
            try:
                result = await super().execute_activity(input)
            except BaseException as exc:
                log.warning("activity failed", error=str(exc) or type(exc).__name__, seconds=round(loop_time() - started, 3))
                raise
            log.info("activity done", seconds=round(loop_time() - started, 3))
            return result


def loop_time() -> float:
    return asyncio.get_running_loop().time()


async def check_search_attributes(client: Client, namespace: str, log: Any) -> None:
    """Runs set drpilot's search attributes; in a namespace without them every run's last
    workflow task would fail for good. Register the missing ones where the namespace lets
    the worker (a dev server, a self-hosted cluster with operator rights); otherwise refuse
    to start rather than strand runs, naming the commands."""
    try:
        listed = await client.operator_service.list_search_attributes(ListSearchAttributesRequest(namespace=namespace))
    except RPCError as exc:  # some hosted namespaces do not let workers list them
        log.warning("cannot list search attributes; make sure they are registered", error=exc.message)
        return
    missing = [key.name for key in SEARCH_ATTRIBUTES if key.name not in listed.custom_attributes]
    if not missing:
        return
    try:
        await client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(
                namespace=namespace,
                search_attributes={name: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD for name in missing},
            )
        )
        log.info("registered drpilot's search attributes", namespace=namespace, names=missing)
        return
    except RPCError as exc:
        refused = exc.message
    commands = "; ".join(
        f"temporal operator search-attribute create --namespace {namespace} --name {name} --type Keyword"
        for name in missing
    )
    raise TemporalUnavailable(
        f"namespace {namespace} lacks drpilot's search attribute(s) {', '.join(missing)} and the worker may "
        f"not register them ({refused}): register them ({commands}), then start the worker again"
    )


async def run_worker(settings: Settings, *, stop: asyncio.Event | None = None) -> None:
    log = get_logger(task_queue=settings.temporal.task_queue, address=settings.temporal.address)
    # The metrics runtime carries the SDK's metrics and drpilot's own (workflows/metrics.py).
    metrics = metrics_runtime()
    client = await connect(settings.temporal, runtime=metrics.runtime)
    await check_search_attributes(client, settings.temporal.namespace, log)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    with ThreadPoolExecutor(max_workers=ACTIVITY_THREADS, thread_name_prefix="activity") as pool:
        worker = Worker(
            client,
            task_queue=settings.temporal.task_queue,
            workflows=WORKFLOWS,
            # A drill's claim at admission and a scheduled readiness check's previous verdict
            # are answered with this worker's own client (drpilot/frontdoor/drills.py, readiness.py).
            activities=build_activities(
                settings, admit=DrillAdmission(client, settings).admit, previous=ReadinessHistory(client).previous
            ),
            activity_executor=pool,
            max_concurrent_activities=ACTIVITY_THREADS,
            graceful_shutdown_timeout=timedelta(seconds=30),
            sticky_queue_schedule_to_start_timeout=timedelta(seconds=STICKY_SECONDS),
            max_heartbeat_throttle_interval=timedelta(seconds=HEARTBEAT_THROTTLE_SECONDS),
            interceptors=[RunLogContext(), HeartbeatKeepalive()],
        )
        health = WorkerHealth(client, lambda: worker.is_running, metrics.address)
        # Health outlives the worker inside it: /healthz answers through the graceful shutdown.
        async with serving(health, settings.health_listen) as listening, worker:
            log.info("worker started", workflows=[w.__name__ for w in WORKFLOWS], health=listening)
            await stop.wait()
            log.info("worker stopping")
    log.info("worker stopped")

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

from temporalio.worker import Worker

from activities.registry import build_activities
from drpilot.logs import get_logger
from drpilot.settings import Settings
from drpilot.temporal import connect
from workflows.failback import FailbackWorkflow
from workflows.failover import FailoverWorkflow

WORKFLOWS = [FailoverWorkflow, FailbackWorkflow]
# Long activities mostly wait on providers; threads are cheap, a starved pool delays heartbeats.
ACTIVITY_THREADS = 32


async def run_worker(settings: Settings, *, stop: asyncio.Event | None = None) -> None:
    log = get_logger(task_queue=settings.temporal.task_queue, address=settings.temporal.address)
    client = await connect(settings.temporal)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    with ThreadPoolExecutor(max_workers=ACTIVITY_THREADS, thread_name_prefix="activity") as pool:
        worker = Worker(
            client,
            task_queue=settings.temporal.task_queue,
            workflows=WORKFLOWS,
            activities=build_activities(settings),
            activity_executor=pool,
            max_concurrent_activities=ACTIVITY_THREADS,
            graceful_shutdown_timeout=timedelta(seconds=30),
        )
        async with worker:
            log.info("worker started", workflows=[w.__name__ for w in WORKFLOWS])
            await stop.wait()
            log.info("worker stopping")
    log.info("worker stopped")

"""The worker keeps a blocked activity heartbeating (drpilot/frontdoor/keepalive.py): an
activity whose one call outlasts its heartbeat timeout is not timed out while its worker
lives, and the details it heartbeated last are the ones Temporal keeps for a retry; one stuck
for longer than any bounded call is let go to its heartbeat timeout."""

from __future__ import annotations

import asyncio
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from datetime import timedelta

import pytest
from temporalio import activity, workflow
from temporalio.api.enums.v1 import PendingActivityState
from temporalio.client import WorkflowFailureError
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, TimeoutError, TimeoutType
from temporalio.worker import Worker

from drpilot.frontdoor import keepalive
from drpilot.frontdoor.keepalive import HeartbeatKeepalive

HEARTBEAT_TIMEOUT = timedelta(seconds=1)
BLOCKED_FOR = 3  # heartbeat timeouts the blocked call outlasts before the test lets it go


@workflow.defn(sandboxed=False)
class OneBlockedCall:
    @workflow.run
    async def run(self) -> str:
        # One attempt: a heartbeat timeout fails the run instead of retrying out of sight.
        return await workflow.execute_activity(
            "blocked_call", start_to_close_timeout=timedelta(seconds=60), heartbeat_timeout=HEARTBEAT_TIMEOUT,
            retry_policy=RetryPolicy(maximum_attempts=1),
        )


@asynccontextmanager
async def one_blocked_call(client, fn):
    """OneBlockedCall started, `fn` its activity, on a worker with the keepalive; its handle."""
    queue = f"keepalive-{uuid.uuid4()}"
    with ThreadPoolExecutor(2) as pool:
        async with Worker(
            client, task_queue=queue, workflows=[OneBlockedCall], activities=[fn],
            activity_executor=pool, interceptors=[HeartbeatKeepalive()],
        ):
            yield await client.start_workflow(OneBlockedCall.run, id=f"k-{queue}", task_queue=queue)


async def test_a_call_blocked_past_the_heartbeat_timeout_stays_alive_with_its_details(dev_env):
    release = threading.Event()

    @activity.defn(name="blocked_call")
    def blocked_call() -> str:  # sync: on the thread pool, like drpilot's activities
        activity.heartbeat({"copied_parts": 7})
        release.wait(60)  # stands for a provider call that cannot heartbeat
        return "done"

    async with one_blocked_call(dev_env.client, blocked_call) as handle:
        try:
            pending = await _heartbeat_received_after(handle, BLOCKED_FOR * HEARTBEAT_TIMEOUT)
        finally:
            release.set()
        assert await handle.result() == "done"
    # Still the first attempt, started once; the server heard a heartbeat three timeouts after
    # the start, with the details the activity itself sent last.
    assert pending.attempt == 1
    assert pending.state == PendingActivityState.PENDING_ACTIVITY_STATE_STARTED
    assert dev_env.client.data_converter.payload_converter.from_payloads(pending.heartbeat_details.payloads) == [
        {"copied_parts": 7}
    ]


async def _heartbeat_received_after(handle, after: timedelta):
    """The pending activity once the server has a heartbeat `after` its start; None if the run
    closed first (its activity timed out)."""
    while True:
        described = await handle.describe()
        if described.status is not None and described.status.name != "RUNNING":
            raise AssertionError(f"the run closed ({described.status.name}) while its activity was blocked")
        for pending in described.raw_description.pending_activities:
            if pending.HasField("last_heartbeat_time") and pending.HasField("last_started_time"):
                beat = pending.last_heartbeat_time.ToDatetime() - pending.last_started_time.ToDatetime()
                if beat > after:
                    return pending
        await asyncio.sleep(0.1)


async def test_an_activity_stuck_past_the_stall_bound_is_left_to_its_heartbeat_timeout(dev_env, monkeypatch):
    monkeypatch.setattr(keepalive, "STALL_SECONDS", 2 * HEARTBEAT_TIMEOUT.total_seconds())
    release = threading.Event()

    @activity.defn(name="blocked_call")
    def stuck_call() -> str:  # never heartbeats: a thread stuck in something unbounded
        release.wait(60)
        return "done"

    async with one_blocked_call(dev_env.client, stuck_call) as handle:
        try:
            with pytest.raises(WorkflowFailureError) as failed:
                await handle.result()
        finally:
            release.set()
    cause = failed.value.cause
    assert isinstance(cause, ActivityError) and isinstance(cause.cause, TimeoutError)
    assert cause.cause.type == TimeoutType.HEARTBEAT

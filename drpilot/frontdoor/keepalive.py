"""Heartbeats that say the worker is alive, whatever its activity is blocked on.

A run's long activities set a short heartbeat timeout (workflows/calls.py HEARTBEAT) so that a
lost worker's activity is retried on another worker within seconds. An activity heartbeats
between its provider calls, but one call (an UploadPartCopy of a large part, a Route53 change
batch) may block longer than that timeout. So, while an activity runs, this worker interceptor
re-sends its last heartbeat details from the event loop every quarter of its heartbeat timeout:
liveness comes from the worker process, progress from the activity's own heartbeats.

This is only safe because every provider call is bounded (activities/kube/clusters.py
REQUEST_TIMEOUT, activities/credentials.py aws_config, httpx timeouts). An activity whose thread
is stuck anyway (a deadlock, a call bounded by nothing) stops being kept alive once it has not
heartbeated itself for STALL_SECONDS, so its heartbeat timeout retries it instead of its
start-to-close timeout hours later.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from typing import Any

from temporalio import activity
from temporalio.worker import (
    ActivityInboundInterceptor,
    ActivityOutboundInterceptor,
    ExecuteActivityInput,
    Interceptor,
)

# A fraction of the heartbeat timeout: the SDK sends at most one heartbeat per 0.8 of the
# timeout (its throttle), so there is always a fresh one waiting when the throttle opens.
FRACTION = 0.25
# Longer than any bounded provider call with its retries (5 x (5 + 60) s for an S3 part copy)
# between two of an activity's own heartbeats.
STALL_SECONDS = 900.0


class HeartbeatKeepalive(Interceptor):
    """Keeps every running activity that has a heartbeat timeout heartbeating."""

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _KeepaliveInbound(next)


class _LastDetails(ActivityOutboundInterceptor):
    """The activity's own heartbeats, passed on and remembered for the keepalive."""

    def __init__(self, next: ActivityOutboundInterceptor):
        super().__init__(next)
        # Until this attempt heartbeats, the previous attempt's details: re-sending nothing
        # would erase the point a retry after this one resumes from.
        self.details: Sequence[Any] = tuple(next.info().heartbeat_details)
        self.at = time.monotonic()  # the attempt's start, then its last own heartbeat

    def heartbeat(self, *details: Any) -> None:
        self.details = details
        self.at = time.monotonic()
        super().heartbeat(*details)


class _KeepaliveInbound(ActivityInboundInterceptor):
    def init(self, outbound: ActivityOutboundInterceptor) -> None:
        self.outbound = _LastDetails(outbound)
        super().init(self.outbound)

    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        timeout = activity.info().heartbeat_timeout
        if not timeout:
            return await super().execute_activity(input)
        keepalive = asyncio.create_task(self._beat(timeout.total_seconds() * FRACTION))
        try:
            return await super().execute_activity(input)
        finally:
            keepalive.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keepalive

    async def _beat(self, every: float) -> None:
        while True:
            await asyncio.sleep(every)
            if time.monotonic() - self.outbound.at > STALL_SECONDS:
                return  # stuck: let the heartbeat timeout hand it to a retry
            # The outbound chain below this one: the SDK records it as the newest heartbeat.
            self.outbound.next.heartbeat(*self.outbound.details)

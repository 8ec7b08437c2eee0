"""Heartbeats that say the worker is alive, whatever its activity is blocked on.

A run's long activities set a short heartbeat timeout (workflows/calls.py HEARTBEAT) so that a
lost worker's activity is retried on another worker within seconds. An activity heartbeats
between its provider calls, but one call (an UploadPartCopy of a large part, a Route53 change
batch) may block longer than that timeout. So, while an activity runs, this worker interceptor
re-sends its last heartbeat details from the event loop every quarter of its heartbeat timeout:
liveness comes from the worker process, progress from the activity's own heartbeats.

This is only safe because every provider call is bounded (activities/kube/clusters.py
REQUEST_TIMEOUT, botocore Configs, httpx timeouts): a call that hung for ever would otherwise
be kept alive until the activity's start-to-close timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
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

    def heartbeat(self, *details: Any) -> None:
        self.details = details
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
            # The outbound chain below this one: the SDK records it as the newest heartbeat.
            self.outbound.next.heartbeat(*self.outbound.details)

"""A rehearsal's short waits (a DNS TTL or a bake divided by the speed) are slept by the worker,
not on server timers that fire about a second late (activities/rehearsal.py); production's waits
stay durable timers."""

from __future__ import annotations

import pytest

from tests.support.temporal import keep_history
from tests.support.world import World
from workflows.failback import FailbackWorkflow
from workflows.types import FailbackInput

LOCAL_ACTIVITY_MARKER = "core_local_activity"  # what the Python SDK records for a local activity


@pytest.mark.parametrize(
    ("speed", "timers", "slept"),
    [
        (1, 10, 0),  # production: every TTL (60 s) and bake (14 min) is a durable timer
        (100, 5, 5),  # TTLs of 0.6 s are slept, bakes of 8.4 s keep their timers
        (1000, 0, 10),  # TTLs of 0.06 s and bakes of 0.84 s are all slept
    ],
)
async def test_waits_below_the_timer_resolution_are_slept_by_the_worker(harness, route53_runbook, speed, timers, slept):
    world = World.normal(route53_runbook)
    world.dns = {"us-east-1": 0, "us-west-2": 100}  # after a failover
    result, handle = await harness(world).run(
        FailbackWorkflow.run, FailbackInput(runbook=route53_runbook, original_region="us-east-1", speed=speed)
    )
    assert result.status == "completed", result.messages
    history = await handle.fetch_history()
    started = [e for e in history.events if e.HasField("timer_started_event_attributes")]
    markers = [
        e for e in history.events
        if e.HasField("marker_recorded_event_attributes")
        and e.marker_recorded_event_attributes.marker_name == LOCAL_ACTIVITY_MARKER
    ]
    assert (len(started), len(markers)) == (timers, slept)
    if speed != 1:  # the projection still counts every wait at its speed-1 length
        steps = len(route53_runbook.spec.traffic_shift.steps)
        ttl = max(r.ttl for r in route53_runbook.spec.dns.records)
        assert result.projection is not None and result.projection.waits["ttl"] == pytest.approx(ttl * steps)
    if speed == 100:
        await keep_history(handle, "failback_rehearsed")

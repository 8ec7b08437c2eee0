"""Drill schedules on the real Temporal dev server (schedules need it; no time skipping), the
drills run by a worker on the simulated world at rehearsal speed, blocking alerts from a real
Alertmanager, evidence in moto's S3: a firing runs a drill, a blocking alert keeps the next
one from starting, a failed drill pauses the schedule, and the history read back from the
evidence packs shows the per-phase times."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from temporalio.client import Client, ScheduleOverlapPolicy

from activities.artifacts.gcs import gcs_client
from activities.artifacts.stores import build_stores
from drpilot.frontdoor import schedules
from drpilot.frontdoor.drills import drill_result, read_history, trend
from tests.support.drills import BUCKET, Drills, drill_runbook, fire, resolve
from tests.support.world import World
from workflows.types import DrillInput, DrillResult

pytestmark = pytest.mark.e2e


async def fire_and_wait(client: Client, sid: str, seen: int) -> DrillResult:
    """Trigger the schedule and wait for the drill that firing started."""
    handle = client.get_schedule_handle(sid)
    await handle.trigger()
    async with asyncio.timeout(30):
        while len((await handle.describe()).info.recent_actions) <= seen:
            await asyncio.sleep(0.1)
    action = (await handle.describe()).info.recent_actions[-1].action
    return await asyncio.wait_for(drill_result(client.get_workflow_handle(action.workflow_id)), 60)


async def test_a_drill_schedule_fires_blocks_pauses_and_keeps_history(dev_env, alertmanager, s3):
    rb = drill_runbook(
        # Its own evidence prefix: moto's S3 is one per process, other tests write packs too.
        alertmanager, spec__drills__evidence=f"s3://{BUCKET}/drills-{uuid.uuid4().hex[:8]}/",
        spec__drills__soak="1m", spec__drills__soak_interval="30s",
        spec__traffic_shift__steps=[50, 100], spec__traffic_shift__bake="1m",
    )
    world = World.normal(rb)
    d = Drills(dev_env.client, world, s3)
    request = DrillInput(runbook=rb, from_region="us-east-1", mode="rehearsal", speed=60, requested_by="tester")
    sid = schedules.schedule_id(rb.name)
    async with d.worker():
        assert await schedules.create_or_update(d.client, d.settings, request, "0 10 * * TUE", ["12-15..01-05"]) == "created"
        assert await schedules.create_or_update(d.client, d.settings, request, "0 10 * * TUE", ["12-15..01-05"]) == "updated"
        described = await d.client.get_schedule_handle(sid).describe()
        assert described.schedule.policy.overlap == ScheduleOverlapPolicy.SKIP
        assert described.schedule.policy.pause_on_failure
        assert len(described.schedule.spec.skip) == 2  # December and January

        ran = await fire_and_wait(d.client, sid, 0)
        assert ran.status == "completed", ran.reason
        assert ran.drill_id.startswith(f"{sid}-")
        assert (ran.scheduled_by, ran.requested_by) == (sid, "tester")
        assert world.dns == rb.normal_weights()
        changes = len(world.changes)

        fire(alertmanager, "InferenceRegionDown")
        try:
            blocked = await fire_and_wait(d.client, sid, 1)
        finally:
            resolve(alertmanager, "InferenceRegionDown")
        assert blocked.status == "blocked" and blocked.firing_alerts == ["InferenceRegionDown"]
        assert len(world.changes) == changes  # nothing moved
        assert not (await d.client.get_schedule_handle(sid).describe()).schedule.state.paused

        world.unhealthy.add("us-west-2")  # the standby fails its gate: the drill fails
        failed = await fire_and_wait(d.client, sid, 2)
        assert failed.status == "failed"
        async with asyncio.timeout(10):
            while not (await d.client.get_schedule_handle(sid).describe()).schedule.state.paused:
                await asyncio.sleep(0.1)
        listed = await schedules.list_drill_schedules(d.client)
        assert [(x.schedule_id, x.paused) for x in listed] == [(sid, True)]
        await schedules.control(d.client, rb.name, "resume", "resumed by tester")
        assert not (await d.client.get_schedule_handle(sid).describe()).schedule.state.paused
        await schedules.control(d.client, rb.name, "delete", "")
        async with asyncio.timeout(30):  # the list is read from visibility, which follows the delete
            while await schedules.list_drill_schedules(d.client) != []:
                await asyncio.sleep(0.1)

    past = read_history(rb, build_stores(s3, gcs_client))
    ours = [p.result for p in past if p.result.drill_id in (ran.drill_id, blocked.drill_id, failed.drill_id)]
    assert [r.status for r in ours] == ["completed", "blocked", "failed"]
    first = ours[0]
    # The pack is written in the evidence phase, so it ends with the phase before.
    assert [p.name for p in first.phases] == ["admission", "preflight", "failover", "soak", "failback"]
    assert all(p.seconds is not None for p in first.phases)
    assert first.rto_seconds_unscaled is not None
    assert "RTO last" in trend([p for p in past if p.result.drill_id == ran.drill_id])

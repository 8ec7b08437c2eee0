"""ReadinessWorkflow (workflows/readiness.py): the read-only preflight of failover and
failback judged check by check, on the time-skipping server against the simulated world,
and on a Temporal Schedule on the dev server: not ready within one firing after a standby
artifact goes missing, ready again after it is back, each turn told to the runbook's
notifiers."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import pytest
from temporalio.client import Client
from temporalio.worker import Worker

from activities import contracts as c
from activities.contracts import ReadinessResult
from activities.front_door import FrontDoorActivities
from drpilot.domain.settings import Settings, TemporalSettings
from drpilot.frontdoor import readiness as front
from tests.support.runbooks import runbook
from tests.support.temporal import WORKFLOWS, keep_history
from tests.support.world import World
from workflows.readiness import ReadinessWorkflow
from workflows.types import ReadinessInput


async def check(client: Client, world: World, keep: str = "") -> ReadinessResult:
    queue = f"ready-{uuid.uuid4()}"
    async with Worker(client, task_queue=queue, workflows=[*WORKFLOWS, ReadinessWorkflow], activities=[*world.activities(), world.last_drill]):
        handle = await client.start_workflow(
            ReadinessWorkflow.run, ReadinessInput(runbook=world.runbook), id=f"readiness-{uuid.uuid4()}",
            task_queue=queue, result_type=ReadinessResult,
        )
        result = await handle.result()
        if keep:
            await keep_history(handle, keep)
        return result


def verdicts(result: ReadinessResult) -> dict[str, bool]:
    return {ch.name: ch.ready for ch in result.checks}


async def test_a_normal_world_is_ready_and_changes_nothing(env):
    rb = runbook("llm-inference.yaml")
    world = World.normal(rb)
    result = await check(env.client, world)
    assert result.ready, result.checks
    names = list(verdicts(result))
    assert names[0] == "dns" and "us-west-2: cluster and workloads" in names
    assert "us-west-2: llm-7b 2024-01-15" in names and "rpo: artifacts" in names
    assert world.changes == [] and world.scale_calls == [] and world.restarts == []


async def test_each_problem_is_its_own_not_ready_check(env):
    rb = runbook("llm-inference.yaml")
    world = World.normal(rb)
    world.missing["us-west-2"] = {"llm-7b"}  # a standby copy gone: a failover would restore it
    world.dark.add("us-east-1")
    world.dns = {"us-east-1": 50, "us-west-2": 50}
    result = await check(env.client, world, keep="readiness_not_ready")
    assert not result.ready
    bad = {name for name, ok in verdicts(result).items() if not ok}
    # A dark cluster's capacity cannot be read: "not checked", never ready.
    assert bad == {
        "dns", "us-east-1: cluster and workloads", "us-east-1: capacity", "us-east-1: images", "us-east-1: quota",
        "us-west-2: llm-7b 2024-01-15",
    }
    artifact = next(ch for ch in result.checks if ch.name == "us-west-2: llm-7b 2024-01-15")
    assert "restore from s3://model-archive/llm-7b/2024-01-15/" in artifact.detail
    dns = next(ch for ch in result.checks if ch.name == "dns")
    assert "normal is us-east-1 100, us-west-2 0" in dns.detail
    assert world.changes == [] and world.scale_calls == []


@pytest.mark.e2e
async def test_a_readiness_schedule_turns_not_ready_and_back(dev_env):
    rb = runbook("llm-inference.yaml", spec__notifications=[{"kind": "json", "url": "http://127.0.0.1:9/hook"}])
    world = World.normal(rb)
    queue = f"ready-{uuid.uuid4()}"
    settings = Settings(temporal=TemporalSettings(task_queue=queue))
    client = dev_env.client
    handle = client.get_schedule_handle(front.schedule_id(rb.name))

    async def fire(seen: int) -> ReadinessResult:
        await handle.trigger()
        async with asyncio.timeout(30):
            while len((await handle.describe()).info.recent_actions) <= seen:
                await asyncio.sleep(0.1)
            action = (await handle.describe()).info.recent_actions[-1].action
            run = client.get_workflow_handle(action.workflow_id, run_id=action.first_execution_run_id)
            await run.result()
            if seen == 1:  # the firing that turned not ready and told the notifiers
                await keep_history(run, "readiness_turned_not_ready")
            # What `drpilot readiness last NAME` shows: the newest finished firing, this one.
            result = await front.latest(client, rb.name)
            assert result is not None
            return result

    activities = [*world.activities(), world.last_drill, *FrontDoorActivities(previous=front.ReadinessHistory(client).previous).all()]
    async with Worker(client, task_queue=queue, workflows=[*WORKFLOWS, ReadinessWorkflow], activities=activities):
        assert await front.schedule(client, settings, rb, timedelta(minutes=30)) == "created"
        assert (await fire(0)).ready
        assert world.notified == []  # ready from the start: nothing to tell
        world.missing["us-west-2"] = {"embed-small"}  # deleted from the standby region
        gone = await fire(1)
        assert not gone.ready
        assert [ch.name for ch in gone.checks if not ch.ready] == ["us-west-2: embed-small 2024-02-01"]
        assert [e.event for e in world.notified] == ["readiness_changed"]
        assert "NOT READY" in world.notified[0].text and "us-west-2: embed-small 2024-02-01" in world.notified[0].text
        assert (await fire(2)).notes == []  # still not ready: told once, not at every firing
        assert len(world.notified) == 1
        world.missing["us-west-2"] = set()  # restored
        assert (await fire(3)).ready
        assert [e.text for e in world.notified[1:]] == [f"{rb.name} is ready again: every check passes"]
        await front.delete(client, rb.name)


async def test_no_drill_completed_within_the_cadence_is_not_ready(env):
    """spec.drills.cadence: a failover nobody exercised lately is not ready, whatever else holds."""
    world = World.normal(runbook("llm-inference.yaml", spec__drills__cadence="90d"))
    name = "drills: one completed within 90d"
    never = await check(env.client, world)
    assert not never.ready and verdicts(never)[name] is False
    assert [ch.detail for ch in never.checks if ch.name == name] == ["no drill of this runbook completed: run `drpilot drill run`"]
    world.last_drill_age = timedelta(days=30)
    lately = await check(env.client, world)
    assert lately.ready, lately.checks
    assert [ch.detail for ch in lately.checks if ch.name == name] == ["drill:llm-inference-20261001T100000Z completed 30d ago"]
    world.last_drill_age = timedelta(days=91)
    stale = await check(env.client, world)
    assert not stale.ready and "longer than spec.drills.cadence" in [ch.detail for ch in stale.checks if ch.name == name][0]
    # Without a cadence there is no cadence check; the drills are read once, for the cold start.
    world.runbook = runbook("llm-inference.yaml")
    assert name not in verdicts(await check(env.client, world))
    assert sum(1 for called, _ in world.calls if called == c.DRILL_LAST) == 4


def measured(ready: float, warmed: float) -> c.MeasuredColdStart:
    """A rehearsal at speed 10 that brought us-west-2's two workloads up (its own seconds)."""
    colds = [c.ColdStart(workload=w, pods=n, region="us-west-2", ready=ready - 1, warmed=warmed - 1) for w, n in
             (("ml-serving/inference-gateway", 2), ("ml-serving/inference-service", 4))]
    colds[1] = colds[1].model_copy(update={"ready": ready, "warmed": warmed})
    from datetime import UTC, datetime
    return c.MeasuredColdStart(drill_id="drill:x", at=datetime(2026, 12, 1, 10, tzinfo=UTC), speed=10, cold_starts=colds)


async def test_the_last_measured_cold_start_is_judged_against_what_the_rto_leaves_it(env):
    # RTO 5m, minus the 60 s TTL and the gate's shortest pass (2 x 5 s): 3m50s for the cold start.
    world = World.normal(runbook("llm-inference.yaml"))
    assert "us-west-2: cold start" not in verdicts(await check(env.client, world))  # no drill measured one
    world.measured_cold_start = measured(ready=22.0, warmed=27.0)  # at speed 1: 220 s, then 5 s of real warm-up
    fast = await check(env.client, world)
    assert fast.ready, fast.checks
    assert [(ch.ready, ch.detail) for ch in fast.checks if ch.name == "us-west-2: cold start"] == [(True, (
        "6 pods ~ 3m40s to ready, 3m45s to warmed, measured in the drill of 2026-12-01 (a rehearsal at speed 10, "
        "projected to speed 1); the RTO (5m) leaves 3m50s for it"
    ))]
    world.measured_cold_start = measured(ready=23.0, warmed=28.0)
    slow = await check(env.client, world)
    assert not slow.ready and verdicts(slow)["us-west-2: cold start"] is False
    assert [ch.detail for ch in slow.checks if ch.name == "us-west-2: cold start"][0].startswith(
        "6 pods ~ 3m50s to ready, 3m55s to warmed, measured in the drill of 2026-12-01 (a rehearsal at speed 10, "
        "projected to speed 1): longer than the 3m50s the RTO (5m) leaves for it after the DNS TTL and the health gate"
    )

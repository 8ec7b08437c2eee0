"""Operator control on a running failover / failback: abort, approve, pause / resume, attach."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from temporalio.client import WorkflowUpdateFailedError, WorkflowUpdateStage

from activities import contracts as c
from tests.support.runbooks import runbook
from tests.support.runs import wait_for
from tests.support.temporal import Harness, keep_history, only_held_activity_pending
from tests.support.world import World, after_failover
from workflows.failback import FailbackWorkflow
from workflows.failover import FailoverWorkflow
from workflows.types import AbortInput, ApproveInput, FailbackInput, FailoverInput, PauseInput


async def abort_when_held(handle, world: World, phase: str | None = None):
    """Wait until the run is inside the held activity (in `phase`, with no other phase
    running), abort, let the activity go."""
    # Awaiting the result is what lets the test server skip time (TTL waits, bakes).
    finished = asyncio.ensure_future(handle.result())
    await only_held_activity_pending(handle, world, phase)
    update = await handle.start_update(
        FailoverWorkflow.abort, AbortInput(by="test", reason="abort test"), wait_for_stage=WorkflowUpdateStage.ACCEPTED
    )
    # A shielded DNS change is never cancelled: compensation waits for it, so let it finish
    # (after long enough for a cancel to reach it through its heartbeats if it were not
    # shielded: world.cancelled tells). Any other held activity is cancelled by the abort;
    # releasing it now would race its completion against the cancel request.
    if world.hold and world.hold[0] == c.DNS_APPLY:
        await asyncio.sleep(0.5)
        world.release.set()
    result = await finished
    world.release.set()
    answer = await update.result()
    return result, answer


async def aborted_when_held(h: Harness, workflow_run, request, phase: str | None = None):
    """Start the run on the harness's world and abort it inside its held activity: the run,
    its result and the abort's answer."""
    async with h.worker():
        handle = await h.start(workflow_run, request)
        return handle, *await abort_when_held(handle, h.world, phase)


def assert_healthy_dns(world: World) -> None:
    assert sum(world.dns.values()) == 100
    serving = world.serving()
    assert serving and all(world.healthy(r) for r in serving), (world.dns, serving)


FAILOVER_HOLDS = [
    ("preflight", (c.DNS_READ, 1)),
    ("prepare", (c.KUBE_SCALE, 1)),
    ("warm-up", (c.PROBES_WARMUP, 1)),
    ("health-gate", (c.PROBES_HEALTH, 1)),
    ("dns-switch", (c.DNS_APPLY, 1)),
    ("post-switch-validation", (c.PROBES_HEALTH, 2)),
]


@pytest.mark.parametrize(("phase", "hold"), FAILOVER_HOLDS, ids=[p for p, _ in FAILOVER_HOLDS])
async def test_abort_failover_in_every_phase_ends_healthy(own_harness, route53_runbook, phase, hold):
    world = World.normal(route53_runbook, hold=hold)
    handle, result, answer = await aborted_when_held(
        own_harness(world), FailoverWorkflow.run, FailoverInput(runbook=route53_runbook, failed_region="us-east-1"), phase
    )
    assert result.status == "aborted"
    held = next(p for p in result.phases if p.name == phase)
    assert held.outcome == "aborted" and "abort test" in held.detail
    assert_healthy_dns(world)
    assert answer.weights == world.dns
    assert all(to == "active" for _, to in world.scale_calls)  # never scaled down
    if hold[0] == c.DNS_APPLY:
        assert world.cancelled == []  # the change batch ran to its end, not cut half-way
    # Before the switch nothing moved; once the gate passed, the target is the good state.
    moved = phase in ("dns-switch", "post-switch-validation")
    assert world.dns == ({"us-east-1": 0, "us-west-2": 100} if moved else {"us-east-1": 100, "us-west-2": 0})
    if phase == "dns-switch":
        await keep_history(handle, "failover_aborted_in_switch")


async def test_abort_failover_while_waiting_for_approval(harness):
    rb = runbook("llm-inference.yaml", spec__approvals__failover="always")
    world = World.normal(rb)
    h = harness(world)
    async with h.worker():
        handle = await h.start(FailoverWorkflow.run, FailoverInput(runbook=rb, failed_region="us-east-1"))
        await wait_for(handle, lambda p: p.waiting_for == "approval")
        answer = await handle.execute_update(FailoverWorkflow.abort, AbortInput(by="carol"))
        result = await handle.result()
    assert result.status == "aborted" and world.changes == []
    assert answer.weights == {"us-east-1": 100, "us-west-2": 0}
    assert_healthy_dns(world)


async def test_abort_ungraceful_failover_never_returns_traffic_to_the_dark_region(own_harness, route53_runbook):
    world = World.normal(route53_runbook)
    world.dark.add("us-east-1")
    world.hold = (c.PROBES_WARMUP, 1)  # DNS has moved; the target is still being prepared
    handle, result, _ = await aborted_when_held(
        own_harness(world), FailoverWorkflow.run,
        FailoverInput(runbook=route53_runbook, failed_region="us-east-1", strategy="ungraceful"),
    )
    assert result.status == "aborted"
    assert world.dns == {"us-east-1": 0, "us-west-2": 100}
    assert_healthy_dns(world)


FAILBACK_HOLDS = [
    ("preflight", (c.DNS_READ, 1), "dr"),
    ("restore", (c.VELERO_RESTORE, 1), "dr"),
    ("sync-artifacts", (c.ARTIFACTS_SYNC, 1), "dr"),
    ("warm-up", (c.PROBES_WARMUP, 1), "dr"),
    ("health-gate", (c.PROBES_HEALTH, 1), "dr"),
    ("shift 25%", (c.DNS_APPLY, 2), "dr"),
    ("shift 50%", (c.PROBES_ANALYSE, 5), "dr"),  # each step judges both serving regions
    ("scale-down", (c.KUBE_SCALE, 2), "home"),
]


@pytest.mark.parametrize(("phase", "hold", "ends"), FAILBACK_HOLDS, ids=[p for p, _, _ in FAILBACK_HOLDS])
async def test_abort_failback_in_every_phase_ends_healthy(own_harness, route53_runbook, phase, hold, ends):
    world = after_failover(route53_runbook, "us-east-1", {"us-west-2": 100}, hold=hold)
    handle, result, _ = await aborted_when_held(
        own_harness(world), FailbackWorkflow.run, FailbackInput(runbook=route53_runbook, original_region="us-east-1"), phase
    )
    assert result.status == "aborted"
    held = next(p for p in result.phases if p.name == phase)
    assert held.outcome == "aborted"
    assert_healthy_dns(world)
    expected = {"us-east-1": 0, "us-west-2": 100} if ends == "dr" else {"us-east-1": 100, "us-west-2": 0}
    assert world.dns == expected
    assert world.replicas["us-west-2"]["ml-serving/inference-service"] == 6 or ends == "home"
    if hold[0] == c.DNS_APPLY:
        assert world.cancelled == []  # the change batch ran to its end, not cut half-way
    if phase == "shift 50%":
        await keep_history(handle, "failback_aborted_in_shift")


async def test_temporal_cancel_is_an_abort_with_compensation(own_harness, route53_runbook):
    world = after_failover(route53_runbook, "us-east-1", {"us-west-2": 100}, hold=(c.PROBES_ANALYSE, 2))
    h = own_harness(world)
    async with h.worker():
        handle = await h.start(FailbackWorkflow.run, FailbackInput(runbook=route53_runbook, original_region="us-east-1"))
        finished = asyncio.ensure_future(handle.result())
        await only_held_activity_pending(handle, world)
        await handle.cancel()
        result = await finished
        world.release.set()
    assert result.status == "aborted"
    assert world.dns == {"us-east-1": 0, "us-west-2": 100}
    assert "cancellation requested through Temporal" in " ".join(result.messages)


async def test_pause_holds_the_shift_until_resume(harness, route53_runbook):
    # inside the 25% step (each step judges both regions)
    world = after_failover(route53_runbook, "us-east-1", {"us-west-2": 100}, hold=(c.PROBES_ANALYSE, 3))
    h = harness(world)
    async with h.worker():
        handle = await h.start(FailbackWorkflow.run, FailbackInput(runbook=route53_runbook, original_region="us-east-1"))
        finished = asyncio.ensure_future(handle.result())  # lets the bakes before 25% skip
        await asyncio.wait_for(world.entered.wait(), 20)
        await handle.execute_update(FailbackWorkflow.pause, PauseInput(by="dave"))
        # Stop skipping time before the run holds: with no timer pending, the test server
        # would skip straight to the end of time.
        finished.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await finished
        world.release.set()
        progress = await wait_for(handle, lambda p: p.waiting_for == "resume")
        assert progress.paused and progress.weights == {"us-east-1": 25, "us-west-2": 75}
        await asyncio.sleep(0.2)
        assert len(world.changes) == 2  # held at 25%
        await handle.execute_update(FailbackWorkflow.resume, PauseInput(by="dave"))
        result = await handle.result()
    assert result.status == "completed"
    assert world.dns == {"us-east-1": 100, "us-west-2": 0}
    assert any("paused" in m for m in result.messages)


async def test_control_requests_that_make_no_sense_are_refused(harness, route53_runbook):
    world = after_failover(route53_runbook, "us-east-1", {"us-west-2": 100}, hold=(c.PROBES_WARMUP, 1))
    h = harness(world)
    async with h.worker():
        handle = await h.start(FailbackWorkflow.run, FailbackInput(runbook=route53_runbook, original_region="us-east-1"))
        await asyncio.wait_for(world.entered.wait(), 20)
        with pytest.raises(WorkflowUpdateFailedError) as refused:
            await handle.execute_update(FailbackWorkflow.approve, ApproveInput(by="eve"))
        assert "needs no approval" in str(refused.value.cause)
        with pytest.raises(WorkflowUpdateFailedError) as refused:
            await handle.execute_update(FailbackWorkflow.resume, PauseInput(by="eve"))
        assert "not paused" in str(refused.value.cause)
        world.release.set()
        result = await handle.result()
    assert result.status == "completed"

"""Safety when the world moves under a run: drift, fresh gates, guarded destinations and
compensation that survives cancellation (workflows/traffic.py)."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta

from temporalio.client import WorkflowUpdateStage

from activities import contracts as c
from tests.support.runbooks import runbook
from tests.support.runs import wait_for
from tests.support.temporal import keep_history, only_held_activity_pending
from tests.support.world import World, after_failover
from workflows.failback import FailbackWorkflow
from workflows.failover import FailoverWorkflow
from workflows.types import AbortInput, ApproveInput, FailbackInput, FailoverInput, PauseInput

HOME, DR = "us-east-1", "us-west-2"
MANUAL = {HOME: 40, DR: 60}  # what someone set by hand in the console mid-shift


async def held_on_drift(h, world: World):
    """A failback whose 25% step is being judged when someone edits DNS by hand; the run
    holds before its 50% step instead of overwriting the edit."""
    world.hold = (c.PROBES_ANALYSE, 3)  # the 25% step's analysis (each step judges both regions)
    handle = await h.start(FailbackWorkflow.run, FailbackInput(runbook=world.runbook, original_region=HOME))
    finished = asyncio.ensure_future(handle.result())  # lets the bakes before 25% skip
    await asyncio.wait_for(world.entered.wait(), 20)
    # Stop skipping time: the drift hold has no timer, and the test server would skip on.
    finished.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await finished
    assert world.dns == {HOME: 25, DR: 75}
    world.dns = dict(MANUAL)
    world.release.set()
    progress = await wait_for(handle, lambda p: p.waiting_for == "drift")
    assert progress.drift is not None
    assert progress.drift.expected == {HOME: 25, DR: 75} and progress.drift.found == MANUAL
    await asyncio.sleep(0.3)
    assert world.dns == MANUAL and len(world.changes) == 2  # held: nothing overwritten
    return handle


async def test_manual_dns_edit_mid_shift_holds_and_resume_accepts_it(harness, route53_runbook):
    world = after_failover(route53_runbook, HOME, {DR: 100})
    h = harness(world)
    async with h.worker():
        handle = await held_on_drift(h, world)
        answer = await handle.execute_update(FailbackWorkflow.resume, PauseInput(by="oncall"))
        assert "drift hold" in answer.message
        result = await handle.result()
    assert result.status == "completed"
    assert world.dns == {HOME: 100, DR: 0}
    assert [ch["us-east-1"] for ch in world.changes] == [10, 25, 50, 75, 100]
    step = next(p for p in result.phases if p.name == "shift 50%")
    assert "DNS changed outside this run" in step.detail and "accepted as the new start" in step.detail
    await keep_history(handle, "failback_held_on_drift")


async def test_manual_dns_edit_mid_shift_then_abort_leaves_the_edit(own_harness, route53_runbook):
    world = after_failover(route53_runbook, HOME, {DR: 100})
    h = own_harness(world)
    async with h.worker():
        handle = await held_on_drift(h, world)
        answer = await handle.execute_update(FailbackWorkflow.abort, AbortInput(by="oncall", reason="manual fix stays"))
        result = await handle.result()
    assert result.status == "aborted"
    assert world.dns == MANUAL and len(world.changes) == 2  # the operator's edit is not undone
    assert answer.weights == MANUAL
    compensation = next(p for p in result.phases if p.name == "compensation")
    assert "changed outside this run" in compensation.detail and "left as found" in compensation.detail


async def test_target_degrading_during_the_approval_wait_changes_no_dns(harness):
    rb = runbook("llm-inference.yaml", spec__approvals__failover="always")
    world = World.normal(rb)
    world.dark.add(HOME)
    h = harness(world)
    async with h.worker():
        handle = await h.start(FailoverWorkflow.run, FailoverInput(runbook=rb, failed_region=HOME))
        await wait_for(handle, lambda p: p.waiting_for == "approval")
        assert any(p.name == "health-gate" and p.outcome == "ok" for p in (await handle.query(FailoverWorkflow.progress)).phases)
        world.unhealthy.add(DR)  # the target degrades while the approval waits
        await handle.execute_update(FailoverWorkflow.approve, ApproveInput(by="oncall"))
        result = await handle.result()
    assert result.status == "failed"
    assert world.changes == []  # DNS never moved to the region that is failing now
    switch = next(p for p in result.phases if p.name == "dns-switch")
    assert switch.outcome == "failed" and "failed a fresh health check right before the DNS change" in switch.detail
    assert any(not e.passed for e in switch.evidence)


async def test_dr_region_degrading_during_the_shift_gets_no_traffic_and_fails_loudly(harness, route53_runbook):
    world = after_failover(route53_runbook, HOME, {DR: 100}, hold=(c.PROBES_ANALYSE, 3))  # inside the 25% step
    h = harness(world)
    async with h.worker():
        handle = await h.start(FailbackWorkflow.run, FailbackInput(runbook=route53_runbook, original_region=HOME))
        finished = asyncio.ensure_future(handle.result())
        await asyncio.wait_for(world.entered.wait(), 20)
        world.unhealthy.add(DR)  # the DR region degrades 40 minutes into the failback
        world.degrade_at[DR] = 0
        world.release.set()
        result = await finished
    assert result.status == "failed"
    assert world.dns == {HOME: 25, DR: 75}  # left where it was: the rollback's destination is failing
    assert [ch[HOME] for ch in world.changes] == [10, 25]
    step = next(p for p in result.phases if p.name == "shift 25%")
    assert "DEGRADED us-west-2" in step.detail
    assert "no healthy destination" in step.detail
    assert any(e.check.startswith("us-west-2:") and not e.passed for e in step.evidence)
    assert any("no healthy destination" in m for m in result.messages)
    await keep_history(handle, "failback_no_healthy_destination")


async def test_rollback_goes_only_to_destination_regions_that_pass_now(harness):
    """Active-active: DNS came from two serving regions; one of them fails during the shift,
    so the rollback sends all traffic to the one that passes."""
    rb = runbook("llm-inference-clouddns.yaml")
    regions = list(rb.regions)
    home, dr = regions[0], regions[1:]
    world = after_failover(rb, home, {dr[0]: 50, dr[1]: 50})
    world.degrade_at[home] = 25  # the returning region degrades at 25%
    world.unhealthy.add(dr[1])  # and one destination region is failing now
    h = harness(world)
    result, _ = await h.run(FailbackWorkflow.run, FailbackInput(runbook=rb, original_region=home))
    assert result.status == "rolled_back"
    assert world.dns[dr[1]] == 0 and world.dns[dr[0]] == 100
    assert all(healthy for region, healthy in world.health_log[-1:])


async def test_temporal_cancel_during_compensation_still_ends_healthy(own_harness, route53_runbook):
    # compensation's change, after the 10% step
    world = after_failover(route53_runbook, HOME, {DR: 100}, hold=(c.DNS_APPLY, 2))
    h = own_harness(world)
    async with h.worker():
        handle = await h.start(FailbackWorkflow.run, FailbackInput(runbook=route53_runbook, original_region=HOME))
        await wait_for(handle, lambda p: p.weights == {HOME: 10, DR: 90} and p.step == "10%")
        update = await handle.start_update(
            FailbackWorkflow.abort, AbortInput(by="test", reason="abort"), wait_for_stage=WorkflowUpdateStage.ACCEPTED
        )
        await only_held_activity_pending(handle, world, "compensation")
        await handle.cancel()  # a second way to stop, while compensation's change is in flight
        await asyncio.sleep(0.5)
        world.release.set()
        result = await handle.result()
        await update.result()
    assert world.cancelled == []  # compensation's change was not cut half-way
    assert world.dns == {HOME: 0, DR: 100}
    assert result.status == "aborted"
    compensation = next(p for p in result.phases if p.name == "compensation")
    assert compensation.outcome == "ok" and "returned to" in compensation.detail
    assert [ch.phase for ch in result.dns_changes] == ["shift 10%", "compensation"]


async def test_a_velero_backup_older_than_the_rpo_stops_the_failover_before_any_change(harness):
    rb = runbook("llm-inference.yaml", spec__backups__velero__restore_on=["failover"])
    world = World.normal(rb)
    world.dark.add(HOME)
    world.velero_backup_age = timedelta(hours=2)  # the schedule stopped running; RPO is 15m
    result, _ = await harness(world).run(FailoverWorkflow.run, FailoverInput(runbook=rb, failed_region=HOME))
    assert result.status == "failed"
    assert world.changes == [] and world.restores == {} and world.scale_calls == []
    preflight = result.phases[0]
    assert preflight.outcome == "failed" and "older than the RPO 900s" in preflight.detail
    assert "completed 7200s ago" in preflight.detail and "rpo_policy: warn" in preflight.detail


async def test_rpo_policy_warn_goes_on_and_says_so(harness):
    rb = runbook(
        "llm-inference.yaml", spec__backups__velero__restore_on=["failover"], spec__objectives__rpo_policy="warn"
    )
    world = World.normal(rb)
    world.dark.add(HOME)
    world.velero_backup_age = timedelta(hours=2)
    result, _ = await harness(world).run(FailoverWorkflow.run, FailoverInput(runbook=rb, failed_region=HOME))
    assert result.status == "completed"
    assert any(m.startswith("warning: older than the RPO") for m in result.messages)


HOOK = {"kind": "json", "url": "http://127.0.0.1:9/drpilot"}


async def test_notifications_tell_start_approval_and_the_verdict_without_holding_the_run(harness):
    rb = runbook("llm-inference.yaml", spec__approvals__failover="always", spec__notifications=[HOOK])
    world = World.normal(rb)
    world.dark.add(HOME)
    h = harness(world)
    async with h.worker():
        handle = await h.start(
            FailoverWorkflow.run, FailoverInput(runbook=rb, failed_region=HOME, requested_by="alice", reason="RegionDown")
        )
        await wait_for(handle, lambda p: p.waiting_for == "approval")
        await handle.execute_update(FailoverWorkflow.approve, ApproveInput(by="oncall"))
        result = await handle.result()
    assert result.status == "completed"
    assert [e.event for e in world.notified] == ["started", "approval_needed", "completed"]
    started, approval, completed = world.notified
    assert started.text == "failover of llm-inference started by cli alice: RegionDown"
    assert approval.text.endswith(f"drpilot approve {result.run_id}")
    assert "RTO" in completed.text and "objective" in completed.text


async def test_a_notification_that_cannot_be_delivered_is_recorded_not_fatal(harness, route53_runbook):
    rb = runbook("llm-inference.yaml", spec__notifications=[{"kind": "slack", "url_env": "BROKEN_HOOK"}])
    world = after_failover(rb, HOME, {DR: 100})
    world.degrade_at[HOME] = 50
    result, _ = await harness(world).run(FailbackWorkflow.run, FailbackInput(runbook=rb, original_region=HOME))
    assert result.status == "rolled_back"
    assert world.dns == {HOME: 0, DR: 100}
    undelivered = [m for m in result.messages if m.startswith("notification not delivered")]
    assert len(undelivered) == 2 and "NotifyRefused" not in undelivered[0]
    assert "started" in undelivered[0] and "rolled_back" in undelivered[1]

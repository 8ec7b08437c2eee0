"""FailoverWorkflow against a simulated world: where traffic, replicas and artifacts end."""

from __future__ import annotations

import asyncio

from temporalio.client import WorkflowUpdateStage

from activities import contracts as c
from drpilot.domain.runbook import Runbook
from tests.support.runbooks import runbook
from tests.support.runs import wait_for
from tests.support.temporal import keep_history
from tests.support.world import World, outage
from workflows.failover import FailoverWorkflow
from workflows.types import ApproveInput, FailoverInput


def phase_names(result) -> list[str]:
    return [p.name for p in result.phases]


async def ungraceful(make_harness, world: World, **request):
    """An ungraceful failover away from us-east-1 on `world`: its result and handle."""
    request = {"runbook": world.runbook, "failed_region": "us-east-1", "strategy": "ungraceful", **request}
    return await make_harness(world).run(FailoverWorkflow.run, FailoverInput(**request))


async def test_graceful_failover_prepares_gates_then_switches(harness, route53_runbook):
    world = World.normal(route53_runbook)
    world.missing["us-west-2"] = {"llm-7b"}  # replication lagged: restore from the archive
    h = harness(world)
    result, handle = await h.run(FailoverWorkflow.run, FailoverInput(runbook=route53_runbook, failed_region="us-east-1", reason="test"))
    assert result.status == "completed", result.messages
    assert world.dns == {"us-east-1": 0, "us-west-2": 100}
    assert world.changes == [{"us-east-1": 0, "us-west-2": 100}]  # one change batch
    assert world.replicas["us-west-2"] == {"ml-serving/inference-service": 6, "ml-serving/inference-gateway": 3}
    assert world.replicas["us-east-1"]["ml-serving/inference-service"] == 6  # never scaled down
    assert not world.missing["us-west-2"]
    assert ("artifacts.restore_from_archive", "us-west-2 llm-7b") in world.calls
    assert all(ok for _, ok in world.health_log)  # traffic only ever went to healthy regions
    # Graceful order: the gate passes before DNS moves.
    names = phase_names(result)
    assert names == [
        "preflight", "prepare", "warm-up", "health-gate", "approval", "dns-switch", "post-switch-validation"
    ]
    assert [p.outcome for p in result.phases] == ["ok", "ok", "ok", "ok", "skipped", "ok", "ok"]
    health = next(p for p in result.phases if p.name == "health-gate")
    assert health.evidence and all(e.passed for e in health.evidence)
    assert result.final_state.dns == {"us-east-1": 0, "us-west-2": 100}
    assert result.final_state.replicas["us-west-2"]["ml-serving/inference-service"] == 6
    assert result.before_state.dns == {"us-east-1": 100, "us-west-2": 0}
    assert result.rto_seconds is not None and result.rto_seconds > 60  # at least the TTL
    assert result.objective_rto_seconds == 300
    await keep_history(handle, "failover_graceful")


async def test_ungraceful_failover_moves_dns_first(harness, route53_runbook):
    world = outage(route53_runbook, "us-east-1")
    result, handle = await ungraceful(harness, world, trigger="cli")
    assert result.status == "completed", result.messages
    assert world.dns == {"us-east-1": 0, "us-west-2": 100}
    # DNS changed before the target was scaled (the failed region is dark: no waiting).
    order = [name for name, _ in world.calls]
    assert order.index(c.DNS_APPLY) < order.index(c.PROBES_HEALTH)
    assert result.before_state.unreachable == ["us-east-1"]
    assert "us-east-1" in result.final_state.unreachable
    assert world.replicas["us-west-2"]["ml-serving/inference-service"] == 6
    await keep_history(handle, "failover_ungraceful")


async def test_graceful_failover_refuses_a_target_that_fails_its_gate(harness, route53_runbook):
    world = World.normal(route53_runbook)
    world.unhealthy.add("us-west-2")
    h = harness(world)
    result, handle = await h.run(FailoverWorkflow.run, FailoverInput(runbook=route53_runbook, failed_region="us-east-1"))
    assert result.status == "failed"
    assert world.changes == []  # DNS never touched
    gate = next(p for p in result.phases if p.name == "health-gate")
    assert gate.outcome == "failed" and "us-west-2" in gate.detail
    assert any(not e.passed for e in gate.evidence)
    assert world.replicas["us-west-2"]["ml-serving/inference-service"] == 6  # left scaled up
    assert result.rto_seconds is None


async def test_ungraceful_failover_with_failing_target_keeps_dns_off_the_dark_region(harness, route53_runbook):
    world = outage(route53_runbook, "us-east-1")
    world.unhealthy.add("us-west-2")
    result, handle = await ungraceful(harness, world)
    assert result.status == "failed"
    assert world.dns == {"us-east-1": 0, "us-west-2": 100}  # never back to the dark region
    recheck = next(p for p in result.phases if p.name == "recheck-failed-region")
    assert recheck.outcome == "failed" and "us-east-1 FAILED" in recheck.detail
    assert "and us-east-1 failed its gate too: DNS left at us-east-1 0, us-west-2 100" in " ".join(result.messages)


async def test_ungraceful_failover_whose_targets_fail_returns_to_a_region_that_passes_again(harness, route53_runbook):
    """An ungraceful call on a region that answers after all, with a target that cannot
    serve: traffic must not stay on the failing target."""
    world = World.normal(route53_runbook)
    world.unhealthy.add("us-west-2")
    result, handle = await ungraceful(harness, world)
    assert result.status == "failed"
    assert world.changes == [{"us-east-1": 0, "us-west-2": 100}, {"us-east-1": 100, "us-west-2": 0}]
    assert world.dns == route53_runbook.normal_weights()
    recheck = next(p for p in result.phases if p.name == "recheck-failed-region")
    assert "us-east-1 passed" in recheck.detail
    assert "DNS returned to us-east-1 100, us-west-2 0" in " ".join(result.messages)
    await keep_history(handle, "failover_ungraceful_rechecked")


def restore_will_fail() -> tuple[Runbook, World]:
    """A failover that restores the standby's workloads with Velero, whose restore ends
    PartiallyFailed: the target cannot be prepared."""
    rb = runbook("llm-inference.yaml", spec__backups__velero__restore_on=["failover"])
    world = World.normal(rb)
    world.velero_phase = "PartiallyFailed"
    return rb, world


async def ungraceful_on_dev_server(dev_harness, rb: Runbook, world: World):
    """(Dev server: the failure cancels the parallel branch, see dev_env.)"""
    return await ungraceful(dev_harness, world, runbook=rb, speed=100)


async def test_ungraceful_failover_whose_target_cannot_be_prepared_returns_to_a_region_that_passes(
    dev_harness, route53_runbook
):
    """DNS moved first, then the target's Velero restore failed: the target never passed a
    gate, the region left behind does, so traffic goes back to it."""
    rb, world = restore_will_fail()
    # Ordered, not raced: a restore that failed before the switch started leaves DNS alone
    # (and this test's two changes would be none; CI once ran it that way).
    world.velero_after = world.dns_moved
    result, _ = await ungraceful_on_dev_server(dev_harness, rb, world)
    assert result.status == "failed"
    assert world.changes == [{"us-east-1": 0, "us-west-2": 100}, {"us-east-1": 100, "us-west-2": 0}]
    messages = " ".join(result.messages)
    assert "the targets could not be prepared" in messages and "velero restore describe" in messages
    assert "DNS returned to us-east-1 100, us-west-2 0" in messages


async def test_ungraceful_failover_whose_target_fails_before_dns_moves_changes_nothing(dev_harness, route53_runbook):
    """The other order of the race above: the restore fails while the switch is still reading
    DNS for drift, before any change was sent. Nothing moved, so nothing is moved back: the
    switch is cancelled and the run fails with the restore's evidence, DNS as it was."""
    rb, world = restore_will_fail()
    world.hold = (c.DNS_READ, 2)  # the switch's read (the first is preflight's)
    world.velero_after = world.entered
    result, _ = await ungraceful_on_dev_server(dev_harness, rb, world)
    assert result.status == "failed"
    assert world.changes == []
    assert world.dns == rb.normal_weights()
    assert world.cancelled == [c.DNS_READ]
    # Nothing to compensate and no region to re-gate: DNS never left it.
    assert [(p.name, p.outcome) for p in result.phases] == [
        ("preflight", "ok"), ("approval", "skipped"), ("dns-switch", "aborted"), ("prepare", "failed")
    ]
    assert "velero restore describe" in " ".join(result.messages)


async def test_ungraceful_failover_whose_target_fails_while_dns_is_still_changing_waits_then_rechecks(
    harness, route53_runbook
):
    """Velero fails while the DNS change batch is still PENDING: the switch is let finish
    (never cut half-way), then the region left behind is gated and, passing, gets its
    traffic back."""
    rb, world = restore_will_fail()
    world.hold = (c.DNS_APPLY, 1)
    world.velero_after = world.entered  # Velero fails while the change batch is in flight
    h = harness(world)
    async with h.worker():
        handle = await h.start(
            FailoverWorkflow.run, FailoverInput(runbook=rb, failed_region="us-east-1", strategy="ungraceful")
        )
        finished = asyncio.ensure_future(handle.result())
        async with asyncio.timeout(20):
            while not (world.entered.is_set() and any(n == c.VELERO_RESTORE for n, _ in world.calls)):
                await asyncio.sleep(0.02)
        await asyncio.sleep(0.3)  # the failed branch is handled while the change is held
        assert world.changes == []
        world.release.set()
        result = await finished
    assert result.status == "failed"
    assert world.cancelled == []
    assert world.changes == [{"us-east-1": 0, "us-west-2": 100}, {"us-east-1": 100, "us-west-2": 0}]
    messages = " ".join(result.messages)
    assert "the targets could not be prepared" in messages
    assert "DNS returned to us-east-1 100, us-west-2 0" in messages


async def test_n_region_failover_redistributes_by_capacity(harness, clouddns_runbook):
    # us-central1 (capacity 8) fails; europe-west4 and asia-southeast1 (4 each) share it.
    world = outage(clouddns_runbook, "us-central1")
    assert world.dns == {"us-central1": 50, "europe-west4": 25, "asia-southeast1": 25}
    h = harness(world)
    async with h.worker():
        handle = await h.start(
            FailoverWorkflow.run, FailoverInput(runbook=clouddns_runbook, failed_region="us-central1")
        )
        # This runbook asks for approval on every failover.
        await wait_for(handle, lambda p: p.waiting_for == "approval")
        assert world.changes == []
        await handle.execute_update(FailoverWorkflow.approve, ApproveInput(by="alice"))
        result = await handle.result()
    assert result.status == "completed", result.messages
    assert world.dns == {"us-central1": 0, "europe-west4": 50, "asia-southeast1": 50}
    assert {r for r, _ in world.scale_calls} == {"europe-west4", "asia-southeast1"}
    approval = next(p for p in result.phases if p.name == "approval")
    assert approval.outcome == "ok" and "alice" in approval.detail
    await keep_history(handle, "failover_n_region")


async def test_n_region_graceful_failover_needs_every_target_to_pass_its_gate(harness):
    rb = runbook("llm-inference-clouddns.yaml", spec__approvals__failover="never")
    world = outage(rb, "us-central1")
    world.unhealthy.add("asia-southeast1")
    h = harness(world)
    result, handle = await h.run(FailoverWorkflow.run, FailoverInput(runbook=rb, failed_region="us-central1"))
    assert result.status == "failed"
    assert world.changes == [] and world.health_log == []  # DNS never moved
    gate = next(p for p in result.phases if p.name == "health-gate")
    assert gate.outcome == "failed" and "asia-southeast1 failed the health gate" in gate.detail


async def test_failover_the_guardrail_forbids_changes_nothing(harness):
    """Three regions, min_healthy_targets 3: losing one cannot keep three serving."""
    rb = runbook(
        "llm-inference-clouddns.yaml", spec__approvals__failover="never", spec__guardrails__min_healthy_targets=3
    )
    world = outage(rb, "us-central1")
    h = harness(world)
    result, handle = await h.run(FailoverWorkflow.run, FailoverInput(runbook=rb, failed_region="us-central1"))
    assert result.status == "failed"
    assert world.changes == [] and world.scale_calls == []
    assert "requires at least 3 (spec.guardrails.min_healthy_targets)" in result.phases[0].detail


async def test_n_region_ungraceful_narrows_to_the_targets_that_pass(harness, clouddns_runbook):
    rb = runbook("llm-inference-clouddns.yaml", spec__approvals__failover="never")
    world = outage(rb, "us-central1")
    world.unhealthy.add("asia-southeast1")
    h = harness(world)
    result, handle = await h.run(FailoverWorkflow.run, FailoverInput(runbook=rb, failed_region="us-central1", strategy="ungraceful"))
    assert result.status == "failed"
    assert world.dns == {"us-central1": 0, "europe-west4": 100, "asia-southeast1": 0}
    assert world.changes == [
        {"us-central1": 0, "europe-west4": 50, "asia-southeast1": 50},
        {"us-central1": 0, "europe-west4": 100, "asia-southeast1": 0},
    ]


async def test_n_region_ungraceful_that_the_guardrail_keeps_from_narrowing_rechecks(harness):
    """min_healthy_targets 2: with one of two targets failing, narrowing would leave one."""
    rb = runbook(
        "llm-inference-clouddns.yaml", spec__approvals__failover="never", spec__guardrails__min_healthy_targets=2
    )
    world = outage(rb, "us-central1")
    world.unhealthy.add("asia-southeast1")
    h = harness(world)
    result, handle = await h.run(FailoverWorkflow.run, FailoverInput(runbook=rb, failed_region="us-central1", strategy="ungraceful"))
    assert result.status == "failed"
    assert world.dns == {"us-central1": 0, "europe-west4": 50, "asia-southeast1": 50}  # not the dark region
    assert "narrow-dns" not in phase_names(result)
    messages = " ".join(result.messages)
    assert "cannot be narrowed" in messages and "spec.guardrails.min_healthy_targets" in messages
    assert "us-central1 failed its gate too" in messages


async def test_explicit_target_and_unknown_region(harness, clouddns_runbook):
    rb = runbook("llm-inference-clouddns.yaml", spec__approvals__failover="never")
    world = World.normal(rb)
    h = harness(world)
    async with h.worker():
        bad = await h.start(FailoverWorkflow.run, FailoverInput(runbook=rb, failed_region="us-central1", target_regions=["mars-1"]))
        result = await bad.result()
    assert result.status == "failed"
    assert "mars-1" in result.phases[0].detail and world.changes == []


async def test_approval_timeout_aborts(harness):
    rb = runbook("llm-inference.yaml", spec__approvals__failover="always", spec__approvals__on_timeout="abort")
    world = World.normal(rb)
    h = harness(world)
    async with h.worker():
        handle = await h.start(FailoverWorkflow.run, FailoverInput(runbook=rb, failed_region="us-east-1"))
        result = await handle.result()  # time skips past the 10-minute approval timeout
    assert result.status == "aborted"
    assert world.changes == [] and world.dns == {"us-east-1": 100, "us-west-2": 0}
    approval = next(p for p in result.phases if p.name == "approval")
    assert approval.outcome == "aborted" and "approval timeout" in approval.detail
    assert world.replicas["us-west-2"]["ml-serving/inference-service"] == 6  # not scaled back down


async def test_approval_timeout_proceeds(harness):
    rb = runbook("llm-inference.yaml", spec__approvals__failover="always", spec__approvals__on_timeout="proceed")
    world = World.normal(rb)
    h = harness(world)
    result, handle = await h.run(FailoverWorkflow.run, FailoverInput(runbook=rb, failed_region="us-east-1"))
    assert result.status == "completed"
    assert world.dns == {"us-east-1": 0, "us-west-2": 100}
    approval = next(p for p in result.phases if p.name == "approval")
    assert approval.outcome == "ok" and "proceeding" in approval.detail


async def test_when_auto_triggered_asks_only_alerts(harness, route53_runbook):
    world = World.normal(route53_runbook)
    h = harness(world)
    async with h.worker():
        handle = await h.start(
            FailoverWorkflow.run, FailoverInput(runbook=route53_runbook, failed_region="us-east-1", trigger="alert")
        )
        progress = await wait_for(handle, lambda p: p.waiting_for == "approval")
        assert progress.approval_required and progress.phase == "approval"
        update = await handle.start_update(
            FailoverWorkflow.approve, ApproveInput(by="bob"), wait_for_stage=WorkflowUpdateStage.COMPLETED
        )
        await update.result()
        result = await handle.result()
    assert result.status == "completed"


async def test_failover_restores_missing_workloads_with_velero_when_asked(harness):
    rb = runbook("llm-inference.yaml", spec__backups__velero__restore_on=["failover", "failback"])
    world = outage(rb, "us-east-1")
    world.replicas["us-west-2"] = {}
    h = harness(world)
    result, handle = await h.run(FailoverWorkflow.run, FailoverInput(runbook=rb, failed_region="us-east-1"))
    assert result.status == "completed", result.messages
    assert len(world.restores) == 1 and next(iter(world.restores)).startswith("drpilot-failover-llm-inference-")
    assert world.replicas["us-west-2"]["ml-serving/inference-service"] == 6


async def test_failover_refuses_a_target_without_its_workloads(dev_harness, route53_runbook):
    world = outage(route53_runbook, "us-east-1")
    world.replicas["us-west-2"] = {}  # and this runbook restores with Velero on failback only
    h = dev_harness(world)
    result, handle = await h.run(FailoverWorkflow.run, FailoverInput(runbook=route53_runbook, failed_region="us-east-1"))
    assert result.status == "failed" and world.changes == []
    assert "not found" in result.phases[0].detail and "--to" in result.phases[0].detail


async def test_repaired_artifacts_are_followed_by_a_rollout_restart_before_the_gate(harness, route53_runbook):
    """The standby lost a model file: it is restored from the archive while the pods scale
    up; those pods loaded without it, so they are restarted, and the version gate passes."""
    world = outage(route53_runbook, "us-east-1")
    world.missing["us-west-2"] = {route53_runbook.spec.models[0].name}
    result, _ = await harness(world).run(
        FailoverWorkflow.run, FailoverInput(runbook=route53_runbook, failed_region="us-east-1")
    )
    assert result.status == "completed", result.messages
    order = [name for name, _ in world.calls if name in (c.ARTIFACTS_RESTORE, c.KUBE_SCALE, c.KUBE_ROLLOUT_RESTART)]
    assert order[-1] == c.KUBE_ROLLOUT_RESTART  # after both the repair and the scale-up
    assert world.restarts == [("us-west-2", f"{result.run_id}/{result.temporal_run_id}/artifacts")]
    assert not world.stale and world.dns == {"us-east-1": 0, "us-west-2": 100}
    prepare = next(p for p in result.phases if p.name == "prepare")
    assert "rollout restart after the artifacts were repaired" in prepare.detail

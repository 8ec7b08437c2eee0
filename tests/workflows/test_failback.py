"""FailbackWorkflow: restore, sync, gate, then the weighted shift with rollback."""

from __future__ import annotations

from temporalio.api.enums.v1 import EventType

from activities import contracts as c
from tests.support.runbooks import runbook
from tests.support.temporal import keep_history, only_held_activity_pending
from tests.support.world import after_failover
from workflows.failback import FailbackWorkflow
from workflows.types import FailbackInput

SERVICE = "ml-serving/inference-service"
# The shift's first three steps from all-DR (us-west-2) back home to us-east-1.
UP_TO_50 = [{"us-east-1": 10, "us-west-2": 90}, {"us-east-1": 25, "us-west-2": 75}, {"us-east-1": 50, "us-west-2": 50}]


async def test_failback_shifts_in_steps_then_scales_dr_to_standby(harness, route53_runbook):
    world = after_failover(route53_runbook, "us-east-1", {"us-west-2": 100})
    h = harness(world)
    async with h.worker():
        handle = await h.start(FailbackWorkflow.run, FailbackInput(runbook=route53_runbook, original_region="us-east-1"))
        result = await handle.result()
        history = await handle.fetch_history()
    assert result.status == "completed", result.messages
    assert world.changes == [
        {"us-east-1": 10, "us-west-2": 90},
        {"us-east-1": 25, "us-west-2": 75},
        {"us-east-1": 50, "us-west-2": 50},
        {"us-east-1": 75, "us-west-2": 25},
        {"us-east-1": 100, "us-west-2": 0},
    ]
    assert world.replicas["us-east-1"][SERVICE] == 6
    assert world.replicas["us-west-2"][SERVICE] == 1  # back to standby, after the shift
    assert world.scale_calls[-1] == ("us-west-2", "standby")
    assert not world.missing["us-east-1"]  # synced from DR
    # Velero restore on failback, named from the run, once.
    assert len(world.restores) == 1 and next(iter(world.restores)).startswith("drpilot-failback-llm-inference-")
    names = [p.name for p in result.phases]
    assert names[0] == "preflight" and set(names[1:3]) == {"restore", "sync-artifacts"}
    # A file was copied in while the pods came up: they are replaced before the gate, which
    # checks the served model version.
    assert names[3:6] == ["restart-pods", "warm-up", "health-gate"]
    assert [region for region, _ in world.restarts] == ["us-east-1"] and not world.stale
    assert [n for n in names if n.startswith("shift")] == ["shift 10%", "shift 25%", "shift 50%", "shift 75%", "shift 100%"]
    assert names[-1] == "scale-down"
    # Each step baked 15 minutes (time skipped): the run spans at least 5 x 15 min.
    assert (result.ended_at - result.started_at).total_seconds() >= 5 * 15 * 60
    # Each step is one TTL wait and one bake, each a single durable timer (never a polling
    # loop), so five 15-minute bakes keep the history small (the bound: 2,000).
    timers = [e for e in history.events if e.event_type == EventType.EVENT_TYPE_TIMER_STARTED]
    assert len(timers) == 2 * len(route53_runbook.spec.traffic_shift.steps)
    assert len(history.events) < 400, len(history.events)
    assert result.final_state.dns == {"us-east-1": 100, "us-west-2": 0}
    await keep_history(handle, "failback_completed")


async def test_failback_rolls_back_when_degradation_starts_at_50(harness, route53_runbook):
    world = after_failover(route53_runbook, "us-east-1", {"us-west-2": 100})
    world.degrade_at["us-east-1"] = 50
    h = harness(world)
    result, handle = await h.run(FailbackWorkflow.run, FailbackInput(runbook=route53_runbook, original_region="us-east-1"))
    assert result.status == "rolled_back"
    assert world.changes == [*UP_TO_50, {"us-east-1": 0, "us-west-2": 100}]  # all traffic back to DR
    step = next(p for p in result.phases if p.name == "shift 50%")
    assert step.outcome == "rolled_back"
    assert step.evidence and not step.evidence[0].passed and "0.200" in step.evidence[0].observed
    assert "degradation at 50%" in step.detail
    assert "shift 75%" not in [p.name for p in result.phases]
    # DR keeps its capacity: nothing scaled down.
    assert ("us-west-2", "standby") not in world.scale_calls
    assert world.replicas["us-west-2"][SERVICE] == 6
    assert result.final_state.dns == {"us-east-1": 0, "us-west-2": 100}
    assert result.rto_seconds is None
    await keep_history(handle, "failback_rolled_back")


async def test_failback_failing_mid_shift_returns_all_traffic_to_dr(harness, route53_runbook):
    """Not a degradation verdict but a broken step (the analysis cannot run at 50%): the run
    fails loudly and compensation puts DNS back where the shift started."""
    world = after_failover(route53_runbook, "us-east-1", {"us-west-2": 100})
    world.analysis_fails_at["us-east-1"] = 50
    h = harness(world)
    result, handle = await h.run(FailbackWorkflow.run, FailbackInput(runbook=route53_runbook, original_region="us-east-1"))
    assert result.status == "failed"
    assert world.changes == [*UP_TO_50, {"us-east-1": 0, "us-west-2": 100}]  # back to the shift's start
    step = next(p for p in result.phases if p.name == "shift 50%")
    assert step.outcome == "failed" and "403 Forbidden" in step.detail
    compensation = next(p for p in result.phases if p.name == "compensation")
    assert "DNS returned to" in compensation.detail
    assert ("us-west-2", "standby") not in world.scale_calls
    assert result.final_state.dns == {"us-east-1": 0, "us-west-2": 100}


async def test_failback_gate_failure_moves_no_traffic(harness, route53_runbook):
    world = after_failover(route53_runbook, "us-east-1", {"us-west-2": 100})
    world.unhealthy.add("us-east-1")
    h = harness(world)
    result, handle = await h.run(FailbackWorkflow.run, FailbackInput(runbook=route53_runbook, original_region="us-east-1"))
    assert result.status == "failed"
    assert world.changes == []
    assert "no traffic was moved" in " ".join(result.messages)


async def test_n_region_failback_returns_to_normal_weights(harness):
    rb = runbook("llm-inference-clouddns.yaml", spec__approvals__failback="never")
    world = after_failover(rb, "us-central1", {"europe-west4": 50, "asia-southeast1": 50})
    h = harness(world)
    result, handle = await h.run(FailbackWorkflow.run, FailbackInput(runbook=rb, original_region="us-central1"))
    assert result.status == "completed", result.messages
    assert world.dns == rb.normal_weights() == {"us-central1": 50, "europe-west4": 25, "asia-southeast1": 25}
    assert world.changes[0] == {"us-central1": 5, "europe-west4": 48, "asia-southeast1": 47} or world.changes[0] == {
        "us-central1": 5, "europe-west4": 47, "asia-southeast1": 48
    }
    assert all(sum(c.values()) == 100 for c in world.changes)
    # Active-active regions serve in normal operation: nothing goes to standby.
    assert all(to == "active" for _, to in world.scale_calls)


async def test_failback_velero_failure_stops_before_traffic(harness, route53_runbook):
    world = after_failover(route53_runbook, "us-east-1", {"us-west-2": 100})
    world.velero_phase = "PartiallyFailed"
    # The restore fails only once the parallel artifact sync has finished: the failure then
    # cancels no sibling (see only_held_activity_pending for the test server's race).
    world.hold = (c.VELERO_RESTORE, 1)
    h = harness(world)
    async with h.worker():
        handle = await h.start(FailbackWorkflow.run, FailbackInput(runbook=route53_runbook, original_region="us-east-1"))
        await only_held_activity_pending(handle, world)
        world.release.set()
        result = await handle.result()
    assert result.status == "failed"
    assert world.changes == []
    restore = next(p for p in result.phases if p.name == "restore")
    assert restore.outcome == "failed" and "velero restore describe" in restore.detail


async def test_failback_to_a_cluster_that_lost_its_workloads_restores_them_first(harness, route53_runbook):
    world = after_failover(route53_runbook, "us-east-1", {"us-west-2": 100})
    world.replicas["us-east-1"] = {}  # rebuilt cluster: no deployments until Velero restores them
    h = harness(world)
    result, handle = await h.run(FailbackWorkflow.run, FailbackInput(runbook=route53_runbook, original_region="us-east-1"))
    assert result.status == "completed", result.messages
    assert world.replicas["us-east-1"] == {"ml-serving/inference-service": 6, "ml-serving/inference-gateway": 3}
    assert "Velero restore creates it" in result.phases[0].detail
    order = [name for name, _ in world.calls]
    assert order.index(c.VELERO_RESTORE) < order.index(c.KUBE_SCALE)

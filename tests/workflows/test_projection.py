"""The rehearsal RTO projection (workflows/projection.py): scaled waits on the critical
path count at their unscaled length, everything else at its measured length."""

from __future__ import annotations

import pytest

from activities import contracts as c
from tests.support.runs import wait_for
from tests.support.world import World, outage
from workflows.failback import FailbackWorkflow
from workflows.failover import FailoverWorkflow
from workflows.types import ApproveInput, FailbackInput, FailoverInput

SPEED = 100


def wait(kind: str, seconds: float, unscaled: float) -> list[c.ScaledWait]:
    return [c.ScaledWait(kind=kind, seconds=seconds, unscaled_seconds=unscaled, uncertainty_seconds=1.0)]


async def test_parallel_targets_count_the_longest_branch_not_the_sum(harness, clouddns_runbook):
    # Two targets brought up side by side: europe-west4's pods take 90 s at speed 1, the
    # other's 30 s. The path is the slower one; the sum (120 s) would be the old mistake.
    world = outage(clouddns_runbook, "us-central1")
    world.waits[(c.KUBE_SCALE, "europe-west4")] = wait("pods", 0.9, 90.0)
    world.waits[(c.KUBE_SCALE, "asia-southeast1")] = wait("pods", 0.3, 30.0)
    for region in ("europe-west4", "asia-southeast1"):
        world.waits[(c.PROBES_HEALTH, region)] = wait("health-interval", 0.1, 10.0)
    h = harness(world)
    async with h.worker():
        handle = await h.start(
            FailoverWorkflow.run, FailoverInput(runbook=clouddns_runbook, failed_region="us-central1", speed=SPEED)
        )
        await wait_for(handle, lambda p: p.waiting_for == "approval")
        await handle.execute_update(FailoverWorkflow.approve, ApproveInput(by="alice"))
        result = await handle.result()
    assert result.status == "completed", result.messages
    p = result.projection
    assert p is not None and p.speed == SPEED
    ttl = max(r.ttl for r in clouddns_runbook.spec.dns.records)
    # The TTL timer, the slower target's pods, and three health checks one after the other:
    # the gate, the fresh check after the approval wait, the post-switch validation (each
    # checks both targets side by side, so each counts once).
    assert p.waits == {"pods": 90.0, "health-interval": 30.0, "ttl": ttl}
    assert p.waits_measured == {"pods": 0.9, "health-interval": pytest.approx(0.3), "ttl": ttl / SPEED}
    assert p.uncertainty_seconds == 4.0
    measured_waits = sum(p.waits_measured.values())
    # Everything else (Temporal, the approval) at its measured length: the fake activities
    # return at once, so it is the measured RTO less the waits, give or take the join.
    assert p.measured_seconds == pytest.approx(result.rto_seconds, abs=1e-3)
    assert p.other_seconds == pytest.approx(result.rto_seconds - measured_waits, abs=1.0)
    assert p.projected_seconds == pytest.approx(p.other_seconds + sum(p.waits.values()), abs=1e-2)
    assert result.rto_seconds_unscaled == p.projected_seconds
    # Not the old upper bound that multiplied every measured second by the speed.
    assert p.projected_seconds < result.rto_seconds * SPEED
    assert result.rto_met is (p.projected_seconds <= result.objective_rto_seconds)
    assert any("projected at speed 1" in m and "(projection)" in m for m in result.messages), result.messages


async def test_failback_projects_its_bakes_and_ttls(harness, route53_runbook):
    world = World.normal(route53_runbook)
    world.dns = {"us-east-1": 0, "us-west-2": 100}  # after a failover
    h = harness(world)
    result, _ = await h.run(
        FailbackWorkflow.run, FailbackInput(runbook=route53_runbook, original_region="us-east-1", speed=SPEED)
    )
    assert result.status == "completed", result.messages
    shift = route53_runbook.spec.traffic_shift
    ttl = max(r.ttl for r in route53_runbook.spec.dns.records)
    steps = len(shift.steps)
    p = result.projection
    assert p is not None
    assert p.waits["ttl"] == pytest.approx(ttl * steps)
    assert p.waits["bake"] == pytest.approx((shift.bake.total_seconds() - ttl) * steps)
    assert p.projected_seconds == pytest.approx(result.rto_seconds - sum(p.waits_measured.values()) + sum(p.waits.values()), abs=1.0)


async def test_speed_one_has_no_projection(harness, route53_runbook):
    world = outage(route53_runbook, "us-east-1")
    result, _ = await harness(world).run(
        FailoverWorkflow.run, FailoverInput(runbook=route53_runbook, failed_region="us-east-1")
    )
    assert result.status == "completed", result.messages
    assert result.projection is None
    assert result.rto_seconds_unscaled == result.rto_seconds

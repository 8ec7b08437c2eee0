"""Failover preflight's capacity check (0.4.0): a graceful failover whose target cannot hold
the pods stops before any change; warn and ungraceful go on, saying so."""

from __future__ import annotations

from activities import contracts as c
from tests.support.runbooks import runbook
from tests.support.world import World, outage
from workflows.failover import FailoverWorkflow
from workflows.types import FailoverInput


async def test_a_graceful_failover_into_a_region_short_of_gpus_changes_nothing(harness, route53_runbook):
    world = World.normal(route53_runbook)
    world.short["us-west-2"] = 4
    result, _ = await harness(world).run(FailoverWorkflow.run, FailoverInput(runbook=route53_runbook, failed_region="us-east-1"))
    assert result.status == "failed"
    preflight = result.phases[0]
    assert preflight.name == "preflight" and preflight.outcome == "failed"
    assert "short by 4 pods (4 nvidia.com/gpu)" in preflight.detail
    assert "nothing was changed" in preflight.detail and "guardrails.capacity: warn" in preflight.detail
    assert world.changes == [] and world.scale_calls == []
    assert (c.KUBE_CAPACITY, "us-west-2") in world.calls


async def test_guardrails_capacity_warn_goes_on_and_says_so(harness):
    rb = runbook("llm-inference.yaml", spec__guardrails__capacity="warn")
    world = World.normal(rb)
    world.short["us-west-2"] = 4
    result, _ = await harness(world).run(FailoverWorkflow.run, FailoverInput(runbook=rb, failed_region="us-east-1"))
    assert result.status == "completed", result.messages
    assert any("WARNING" in m and "short by 4 pods" in m for m in result.phases[0].detail.splitlines() + result.messages)


async def test_an_ungraceful_failover_warns_and_goes_on(harness, route53_runbook):
    world = outage(route53_runbook, "us-east-1")
    world.short["us-west-2"] = 4
    result, _ = await harness(world).run(
        FailoverWorkflow.run, FailoverInput(runbook=route53_runbook, failed_region="us-east-1", strategy="ungraceful")
    )
    assert result.status == "completed", result.messages
    assert world.dns == {"us-east-1": 0, "us-west-2": 100}
    assert "partial capacity beats none" in result.phases[0].detail


PULLS_FROM_EAST = "ml-serving/inference-service pulls from us-east-1's registry: fails while us-east-1 is down"


async def test_a_graceful_failover_whose_images_or_quota_fail_changes_nothing(harness, route53_runbook):
    world = World.normal(route53_runbook)
    world.image_findings["us-west-2"] = PULLS_FROM_EAST
    result, _ = await harness(world).run(FailoverWorkflow.run, FailoverInput(runbook=route53_runbook, failed_region="us-east-1"))
    assert result.status == "failed"
    preflight = result.phases[0]
    assert preflight.name == "preflight" and preflight.outcome == "failed"
    assert preflight.detail.endswith(
        f"us-west-2: images: {PULLS_FROM_EAST}; nothing was changed: push the images to the registry in the region "
        "they are pulled in, free GPUs there, raise the NodePool's spec.limits or the GPU quota, choose other targets "
        "with --to, or set guardrails.capacity: warn to go on regardless"
    ), preflight.detail
    assert world.changes == [] and world.scale_calls == []

    world = World.normal(route53_runbook)
    world.quota_short["us-west-2"] = "needs 96 vCPUs of G instances, quota 48: short by 48"
    result, _ = await harness(world).run(FailoverWorkflow.run, FailoverInput(runbook=route53_runbook, failed_region="us-east-1"))
    assert result.status == "failed" and "us-west-2: quota: needs 96 vCPUs" in result.phases[0].detail
    assert world.changes == [] and world.scale_calls == []


async def test_an_ungraceful_failover_warns_of_images_and_quota_and_goes_on(harness, route53_runbook):
    world = outage(route53_runbook, "us-east-1")
    world.image_findings["us-west-2"] = PULLS_FROM_EAST
    world.quota_short["us-west-2"] = "short by 48 vCPUs"
    result, _ = await harness(world).run(
        FailoverWorkflow.run, FailoverInput(runbook=route53_runbook, failed_region="us-east-1", strategy="ungraceful")
    )
    assert result.status == "completed", result.messages
    assert f"WARNING us-west-2: images: {PULLS_FROM_EAST}; us-west-2: quota: short by 48 vCPUs (ungraceful" in result.phases[0].detail

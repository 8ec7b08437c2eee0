"""One run per runbook (and per DNS record), whatever the action, through drpilot's own
start (what the CLI, the webhook and drills call): workflows/admission.py."""

from __future__ import annotations

import asyncio

import pytest

from activities import contracts as c
from drpilot.domain.runbook import Runbook
from drpilot.domain.settings import Settings, TemporalSettings
from drpilot.frontdoor import runs
from tests.support.runbooks import runbook
from tests.support.runs import wait_for
from tests.support.world import World, after_failover
from workflows import admission
from workflows.admission import AdmissionWorkflow
from workflows.failover import FailoverWorkflow
from workflows.types import ApproveInput, FailbackInput, FailoverInput


def waiting_runbook(failback: str = "never") -> Runbook:
    # Failovers wait at their approval gate: a run that stays active while others knock.
    return runbook("llm-inference.yaml", spec__approvals__failover="always", spec__approvals__failback=failback)


def settings_for(h) -> Settings:
    return Settings(temporal=TemporalSettings(task_queue=h.task_queue))


async def failover_waiting_for_approval(h, rb: Runbook) -> runs.Started:
    first = await runs.start(h.client, settings_for(h), FailoverInput(runbook=rb, failed_region="us-east-1"))
    await wait_for(first.handle, lambda p: p.waiting_for == "approval")
    return first


async def test_second_start_of_the_same_request_attaches(harness):
    """A second start of the same request while the first runs attaches to it (the reason
    may differ); once the first has finished the next incident is a new run."""
    rb = waiting_runbook()
    world = World.normal(rb)
    h = harness(world)
    settings = settings_for(h)
    async with h.worker():
        first = await runs.start(h.client, settings, FailoverInput(runbook=rb, failed_region="us-east-1"))
        assert first.handle.id == "failover:llm-inference" and not first.attached
        await wait_for(first.handle, lambda p: p.waiting_for == "approval")
        second = await runs.start(h.client, settings, FailoverInput(runbook=rb, failed_region="us-east-1", reason="again"))
        assert second.attached
        assert (await second.handle.describe()).run_id == first.handle.result_run_id
        await second.handle.execute_update(FailoverWorkflow.approve, ApproveInput(by="frank"))
        result = await first.handle.result()
        assert result.status == "completed"
        assert world.changes == [{"us-east-1": 0, "us-west-2": 100}]  # one run, one change
        assert sum(1 for name, _ in world.calls if name == c.KUBE_SCALE) == 1

        later = await runs.start(h.client, settings, FailoverInput(runbook=rb, failed_region="us-west-2"))
        assert not later.attached
        assert later.handle.result_run_id != first.handle.result_run_id
        await later.handle.execute_update(FailoverWorkflow.approve, ApproveInput(by="frank"))
        assert (await later.handle.result()).status == "completed"
    assert world.dns == {"us-east-1": 100, "us-west-2": 0}


async def test_failback_while_a_failover_runs_is_refused_with_who_and_how_to_abort(harness):
    rb = waiting_runbook()
    world = World.normal(rb)
    h = harness(world)
    settings = settings_for(h)
    async with h.worker():
        first = await runs.start(
            h.client, settings, FailoverInput(runbook=rb, failed_region="us-east-1", requested_by="alice")
        )
        await wait_for(first.handle, lambda p: p.waiting_for == "approval")
        with pytest.raises(runs.RunRefused) as refused:
            await runs.start(h.client, settings, FailbackInput(runbook=rb, original_region="us-east-1"))
        text = str(refused.value)
        assert "\n" not in text
        assert "failback of llm-inference cannot start while failover:llm-inference" in text
        assert "from us-east-1" in text and "started by cli alice at " in text
        assert "drpilot abort failover:llm-inference" in text
        state = await h.client.get_workflow_handle(admission.workflow_id(h.task_queue)).query(AdmissionWorkflow.state)
        assert [holder.claim.run_id for holder in state.holders] == ["failover:llm-inference"]

        await first.handle.execute_update(FailoverWorkflow.approve, ApproveInput(by="frank"))
        assert (await first.handle.result()).status == "completed"
        # The run released its claim as it ended: the failback may start now.
        back = await runs.start(h.client, settings, FailbackInput(runbook=rb, original_region="us-east-1"))
        assert back.handle.id == "failback:llm-inference" and (await back.handle.result()).status == "completed"
    assert world.changes[0] == {"us-east-1": 0, "us-west-2": 100}  # the failover's, before any failback's


async def test_a_different_request_of_the_running_action_is_refused_naming_the_difference(harness):
    rb = waiting_runbook()
    h = harness(World.normal(rb))
    settings = settings_for(h)
    async with h.worker():
        first = await failover_waiting_for_approval(h, rb)
        with pytest.raises(runs.RunRefused) as refused:
            await runs.start(
                h.client, settings,
                FailoverInput(runbook=rb, failed_region="us-east-1", strategy="ungraceful", target_regions=["us-west-2"]),
            )
        text = str(refused.value)
        assert "already running with a different request" in text
        assert "strategy: running graceful, asked ungraceful" in text
        assert "to: running default, asked us-west-2" in text
        assert refused.value.admission.differences  # and it did not attach
        await first.handle.cancel()
        assert (await first.handle.result()).status == "aborted"


async def test_two_runbooks_moving_the_same_dns_record_never_run_at_once(harness):
    rb = waiting_runbook()
    twin = Runbook.model_validate({**rb.model_dump(mode="json"), "metadata": {"name": "llm-inference-copy"}})
    h = harness(World.normal(rb))
    settings = settings_for(h)
    async with h.worker():
        first = await failover_waiting_for_approval(h, rb)
        with pytest.raises(runs.RunRefused) as refused:
            await runs.start(h.client, settings, FailoverInput(runbook=twin, failed_region="us-east-1"))
        record = rb.spec.dns.records[0].name
        assert f"holds DNS record route53/{rb.spec.dns.zone}/{record}" in str(refused.value)
        await first.handle.cancel()
        await first.handle.result()


async def test_a_terminated_run_does_not_keep_its_runbook(harness):
    """`temporal workflow terminate` skips the run's own release: the next start finds the
    holder closed and drops its claim."""
    rb = waiting_runbook()
    h = harness(World.normal(rb))
    settings = settings_for(h)
    async with h.worker():
        first = await failover_waiting_for_approval(h, rb)
        await first.handle.terminate(reason="test")
        again = await runs.start(h.client, settings, FailbackInput(runbook=rb, original_region="us-east-1"))
        assert not again.attached and again.handle.id == "failback:llm-inference"
        assert (await again.handle.result()).status == "completed"


async def test_simultaneous_starts_admit_exactly_one(dev_harness):
    """An alert and an on-call engineer (and twenty more) at the same moment: one run. (On
    the real dev server: cancelling a failback mid-branch trips the time-skipping server's
    ACTIVITY_UNKNOWN bug, sdk-java#2391.)"""
    rb = waiting_runbook(failback="always")
    world = World.normal(rb)
    h = dev_harness(world)
    settings = settings_for(h)
    requests = [
        FailoverInput(runbook=rb, failed_region="us-east-1") if i % 2 else FailbackInput(runbook=rb, original_region="us-east-1")
        for i in range(24)
    ]
    async with h.worker():
        answers = await asyncio.gather(*(runs.start(h.client, settings, r) for r in requests), return_exceptions=True)
        started = [a for a in answers if isinstance(a, runs.Started) and not a.attached]
        attached = [a for a in answers if isinstance(a, runs.Started) and a.attached]
        refused = [a for a in answers if isinstance(a, runs.RunRefused)]
        assert len(started) == 1, answers
        assert len(started) + len(attached) + len(refused) == len(requests)
        winner = started[0].handle.id
        assert all(a.handle.id == winner for a in attached)
        assert all(winner in str(r) for r in refused)
        await started[0].handle.cancel()
        await started[0].handle.result()
    assert world.changes == []


async def test_status_lists_drpilot_outcome_and_filters_by_it(dev_harness):
    """Temporal calls a rolled-back run "completed"; `drpilot status` shows rolled_back, from
    the outcome search attribute the run sets as it ends (real dev server: visibility)."""
    rb = runbook("llm-inference.yaml")
    world = after_failover(rb, "us-east-1", {"us-west-2": 100})
    world.degrade_at["us-east-1"] = 50
    h = dev_harness(world)
    settings = settings_for(h)
    async with h.worker():
        started = await runs.start(h.client, settings, FailbackInput(runbook=rb, original_region="us-east-1", speed=1000))
        assert (await started.handle.result()).status == "rolled_back"
        async with asyncio.timeout(20):  # visibility is eventually consistent: the outcome
            # (upserted in the run's last workflow task) may show before the run's close does
            while not (listed := await runs.latest_runs(h.client, outcome="rolled_back")) or listed[0].state == "running":
                await asyncio.sleep(0.1)
    assert [(r.run_id, r.runbook, r.state, r.outcome) for r in listed] == [
        ("failback:llm-inference", "llm-inference", "completed", "rolled_back")
    ]
    assert await runs.latest_runs(h.client, outcome="completed") == []
    assert [r.run_id for r in await runs.latest_runs(h.client, runbook="llm-inference")] == ["failback:llm-inference"]


async def test_an_evacuation_of_many_runbooks_at_once_admits_every_one(dev_harness):
    """A region loss pages every runbook homed there at once. Temporal allows 10 in-flight
    updates per workflow execution and answers the rest ResourceExhausted; admission must
    wait its turn, not fail (the 50-runbook evacuation benchmark lost runs that way; 200 at
    once here lost 114 of them before admission sent a turned-away claim again)."""
    rb = waiting_runbook()
    h = dev_harness(World.normal(rb))
    claims = [
        runs.claim_for(FailoverInput(runbook=rb, failed_region="us-east-1")).model_copy(
            update={"run_id": f"failover:rb-{i}", "runbook": f"rb-{i}", "dns_records": [f"route53/example.com/rb-{i}"]}
        )
        for i in range(200)
    ]
    async with h.worker():
        answers = await asyncio.gather(*(runs.admit(h.client, settings_for(h), c) for c in claims), return_exceptions=True)
    problems = [a for a in answers if not isinstance(a, admission.Admission) or not a.admitted]
    assert problems == []


def fleet_copy(rb: Runbook, name: str, record: str) -> Runbook:
    """The runbook under another name, moving its own DNS record."""
    data = rb.model_dump(mode="json")
    data["metadata"]["name"] = name
    for r in data["spec"]["dns"]["records"]:
        r["name"] = record
    return Runbook.model_validate(data)


async def test_a_fleet_is_admitted_in_one_update_with_every_guarantee(dev_harness):
    """An evacuation's batch: every runbook admitted in ONE update, and the guarantees of a
    start each hold inside the batch: the same request twice attaches, two runbooks moving
    one DNS record run one at a time, one run per runbook whatever the action."""
    rb = waiting_runbook()
    h = dev_harness(World.normal(rb))
    fleet = [fleet_copy(rb, f"rb-{i}", f"rb-{i}.example.com.") for i in range(5)]
    sharing = fleet_copy(rb, "rb-shares-1", "rb-1.example.com.")
    requests = [
        *(FailoverInput(runbook=r, failed_region="us-east-1") for r in fleet),
        FailoverInput(runbook=fleet[0], failed_region="us-east-1"),  # the same request again
        FailoverInput(runbook=sharing, failed_region="us-east-1"),  # rb-1's record
        FailbackInput(runbook=fleet[2], original_region="us-east-1"),  # rb-2 is held
    ]
    async with h.worker():
        answers = await runs.start_many(h.client, settings_for(h), requests)
        started = [a for a in answers if isinstance(a, runs.Started)]
        try:
            assert [a.attached for a in started] == [False] * 5 + [True]
            assert started[5].handle.id == started[0].handle.id == "failover:rb-0"
            refused = answers[6:]
            assert isinstance(refused[0], runs.RunRefused) and "holds DNS record route53/" in str(refused[0])
            assert "rb-1.example.com." in str(refused[0]) and "failover:rb-1" in str(refused[0])
            assert isinstance(refused[1], runs.RunRefused) and "holds runbook rb-2" in str(refused[1])
            events = [e async for e in h.client.get_workflow_handle(admission.workflow_id(h.task_queue)).fetch_history_events()]
            assert sum(e.HasField("workflow_execution_update_accepted_event_attributes") for e in events) == 1
        finally:
            for s in started[:5]:
                await s.handle.cancel()

"""Four eyes (approvals.distinct_approver): a run a person started is not approved by that
person, whichever door the approval comes through (the update's validator decides)."""

from __future__ import annotations

import pytest
from temporalio.client import WorkflowUpdateFailedError

from tests.support.runbooks import runbook
from tests.support.runs import wait_for
from tests.support.world import outage
from workflows.failover import FailoverWorkflow
from workflows.types import ApproveInput, FailoverInput


async def refused(handle, by: str) -> str:
    with pytest.raises(WorkflowUpdateFailedError) as raised:
        await handle.execute_update(FailoverWorkflow.approve, ApproveInput(by=by))
    return raised.value.cause.message


async def test_the_starter_cannot_approve_their_own_failover_and_another_person_can(harness):
    rb = runbook("llm-inference.yaml", spec__approvals__failover="always")
    world = outage(rb, "us-east-1")
    h = harness(world)
    async with h.worker():
        handle = await h.start(
            FailoverWorkflow.run, FailoverInput(runbook=rb, failed_region="us-east-1", trigger="console", requested_by="alice@example.com")
        )
        waiting = await wait_for(handle, lambda p: p.waiting_for == "approval")
        assert waiting.requested_by == "alice@example.com" and not waiting.starter_may_approve
        assert await refused(handle, "alice@example.com") == (
            "four eyes: alice@example.com started this run, so another person must approve it (approvals.distinct_approver)"
        )
        assert "an approval must name who gives it" in await refused(handle, "")
        assert (await handle.query(FailoverWorkflow.progress)).approved_by is None  # the refusals changed nothing
        await handle.execute_update(FailoverWorkflow.approve, ApproveInput(by="bob@example.com"))
        result = await handle.result()
    assert result.status == "completed" and result.approved_by == "bob@example.com"
    assert result.requested_by == "alice@example.com"


async def test_distinct_approver_false_lets_the_starter_approve(harness):
    rb = runbook("llm-inference.yaml", spec__approvals__failover="always", spec__approvals__distinct_approver=False)
    h = harness(outage(rb, "us-east-1"))
    async with h.worker():
        handle = await h.start(FailoverWorkflow.run, FailoverInput(runbook=rb, failed_region="us-east-1", requested_by="root"))
        waiting = await wait_for(handle, lambda p: p.waiting_for == "approval")
        assert waiting.starter_may_approve
        await handle.execute_update(FailoverWorkflow.approve, ApproveInput(by="root"))
        result = await handle.result()
    assert result.status == "completed" and result.approved_by == "root"

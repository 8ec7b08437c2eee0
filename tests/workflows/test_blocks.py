"""Blocks in the procedures (workflows/blocks.py): the guarantees README's invariants list,
each tried against a run. The http blocks go through the real activity to the twin's HTTP
receiver (loopback), which records what it got; the rest of the world is simulated."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from temporalio import activity
from temporalio.client import WorkflowUpdateFailedError, WorkflowUpdateStage
from temporalio.exceptions import ApplicationError

from activities import contracts as c
from activities.blocks.http import HttpBlockActivities
from drpilot import report
from tests.support.runbooks import runbook
from tests.support.runs import wait_for
from tests.support.temporal import only_held_activity_pending
from tests.support.world import World, after_failover
from tests.workflows.test_readiness import check as readiness
from workflows.failback import FailbackWorkflow
from workflows.failover import FailoverWorkflow
from workflows.types import AbortInput, ApproveInput, FailbackInput, FailoverInput

HOME, DR = "us-east-1", "us-west-2"
WRITERS = {"namespace": "ingest", "deployment": "queue-writer", "replicas": 0}
REGISTRY_DB = {
    "name": "registry-db", "kind": "aurora_global", "at": "prepare", "global_cluster": "mlflow", "max_lag": "30s",
    "members": {HOME: "arn:aws:rds:us-east-1:1:cluster:use1", DR: "arn:aws:rds:us-west-2:1:cluster:usw2"},
}


def with_blocks(blocks: list[dict], **changes) -> object:
    return runbook("llm-inference.yaml", spec__blocks=blocks, **changes)


def flags(url: str, at: str = "after_switch", **extra) -> dict:
    return {
        "name": "flags", "kind": "http", "at": at,
        "request": {"method": "POST", "url": f"{url}/api/dr", "body": {"serving": "{target}"}},
        "undo": {"method": "POST", "url": f"{url}/api/dr", "body": {"serving": "{source}"}},
        **extra,
    }


@dataclass
class BlockWorld(World):
    """The simulated world, with the real http block activity (run in a thread, as the
    worker runs it) and what DNS said each time a block's request went out."""

    http: HttpBlockActivities = field(default_factory=HttpBlockActivities)
    lose_first_answer: bool = False  # the first request's answer is lost after it was sent
    dns_at_request: list[dict[str, int]] = field(default_factory=list)

    writer: str = HOME  # the region whose Aurora member writes
    lag: float = 1.0  # the other member's replication lag, seconds
    writer_moves: list[tuple[str, str, dict[str, int]]] = field(default_factory=list)  # (writer, mode, DNS then)

    def activities(self) -> list[Callable]:
        return [*super().activities(), self.http_block, self.http_block_preflight, self.aurora_read, self.aurora_switch]

    @activity.defn(name=c.BLOCKS_AURORA_READ)
    async def aurora_read(self, input: c.AuroraReadInput) -> c.AuroraState:
        return c.AuroraState(
            block=input.block, global_cluster=input.global_cluster, exists=True, writer_region=self.writer,
            writer_arn=input.members[self.writer], lag_seconds=self.lag,
        )

    @activity.defn(name=c.BLOCKS_AURORA_SWITCH)
    async def aurora_switch(self, input: c.AuroraSwitchInput) -> c.AuroraSwitchResult:
        before, self.writer = self.writer, input.target
        self.writer_moves.append((input.target, input.mode, dict(self.dns)))
        return c.AuroraSwitchResult(
            block=input.block, global_cluster=input.global_cluster, writer_before=before, writer_after=input.target,
            mode="switchover" if input.mode == "graceful" else "failover", data_loss_allowed=input.mode == "ungraceful",
            lag_seconds=self.lag, reason=input.mode, seconds=1,
        )

    @activity.defn(name=c.BLOCK_HTTP)
    async def http_block(self, input: c.HttpBlockInput) -> c.HttpBlockResult:
        await self._visit(c.BLOCK_HTTP, input.block)
        self.dns_at_request.append(dict(self.dns))
        result = await asyncio.to_thread(self.http.call, input)
        if self.lose_first_answer and activity.info().attempt == 1:
            # The request had its effect; the worker died before recording the answer.
            raise ApplicationError("worker lost before the answer was recorded")
        return result

    @activity.defn(name=c.BLOCK_HTTP_PREFLIGHT)
    async def http_block_preflight(self, input: c.HttpPreflightInput) -> c.HttpPreflightResult:
        return await asyncio.to_thread(self.http.preflight, input)


async def test_a_retried_http_block_has_one_effect_at_the_receiver(harness, receiver):
    rb = with_blocks([flags(receiver.url)])
    world = BlockWorld.normal(rb)
    world.lose_first_answer = True
    result, _ = await harness(world).run(FailoverWorkflow.run, FailoverInput(runbook=rb, failed_region=HOME))
    assert result.status == "completed", result.messages
    got = receiver.received
    assert len(got.deliveries) == 2 and len({d.key for d in got.deliveries}) == 1  # retried, same key
    assert len(got.effects) == 1 and got.effects[0].body == {"serving": DR}  # {target} replaced
    step = next(p for p in result.phases if p.name == "block:flags")
    assert step.outcome == "ok" and "200" in step.detail
    assert world.dns_at_request[0] == {HOME: 0, DR: 100}  # after_switch: after the switch


async def test_a_block_failing_before_the_switch_leaves_dns_and_undoes_its_predecessors(harness, receiver):
    receiver.board.update(http_fails=["ticket"])
    ticket = {
        "name": "ticket", "kind": "http", "at": "before_switch",
        "request": {"method": "POST", "url": f"{receiver.url}/tickets", "body": {"state": "failover to {target}"}},
    }
    stop = {"name": "stop-writers", "kind": "scale", "at": "prepare", "region": "{target}", "workloads": [WRITERS]}
    rb = with_blocks([REGISTRY_DB, stop, flags(receiver.url, at="prepare"), ticket])
    world = BlockWorld.normal(rb)
    world.replicas[DR]["ingest/queue-writer"] = 2
    result, _ = await harness(world).run(FailoverWorkflow.run, FailoverInput(runbook=rb, failed_region=HOME))
    assert result.status == "failed"
    assert any("block ticket failed at before_switch" in m and "DNS not changed" in m for m in result.messages)
    assert world.changes == [] and world.dns == {HOME: 100, DR: 0}  # DNS never moved
    tickets = [d for d in receiver.received.deliveries if d.block == "ticket"]
    assert len(tickets) == 6 and receiver.received.effects[-1].block == "flags"  # retried on 503, no effect
    # Compensation: each completed block's undo, newest first.
    undo = [d for d in receiver.received.effects if d.key.endswith("/flags/undo")]
    assert len(undo) == 1 and undo[0].body == {"serving": HOME}
    assert world.replicas[DR]["ingest/queue-writer"] == 2  # stop-writers undone (scaled back)
    names = [p.name for p in result.phases]
    assert names.index("undo:flags") < names.index("undo:stop-writers") < names.index("undo:registry-db")
    assert world.writer == HOME and [w for w, _, _ in world.writer_moves] == [DR, HOME]  # the writer back with the traffic


AFTER_SWITCH = [  # on_failure, is the region left healthy now, how the run ends, where DNS ends
    ("fail", True, "failed", {HOME: 0, DR: 100}),
    ("rollback", True, "rolled_back", {HOME: 100, DR: 0}),
    ("rollback", False, "failed", {HOME: 0, DR: 100}),  # never back to a region failing now
]


@pytest.mark.parametrize(("on_failure", "healthy", "status", "dns"), AFTER_SWITCH)
async def test_a_block_failing_after_the_switch_leaves_traffic_unless_it_says_rollback(
    harness, receiver, on_failure, healthy, status, dns
):
    receiver.board.update(http_fails=["flags"])
    rb = with_blocks([flags(receiver.url, on_failure=on_failure)])
    world = BlockWorld.normal(rb)
    if not healthy:
        world.unhealthy.add(HOME)
    result, _ = await harness(world).run(FailoverWorkflow.run, FailoverInput(runbook=rb, failed_region=HOME))
    assert result.status == status and world.dns == dns
    assert any("block flags failed at after_switch" in m for m in result.messages)
    assert receiver.received.effects == []


async def test_a_failback_runs_its_after_shift_blocks_after_100_percent_and_waits_for_a_block_approval(harness, receiver):
    approval = {"name": "dba-confirms", "kind": "approval", "at": "before_switch", "message": "writes healthy?"}
    rb = with_blocks([approval, flags(receiver.url)])
    world = BlockWorld(runbook=rb, **{k: v for k, v in vars(after_failover(rb, HOME, {DR: 100})).items() if k != "runbook"})
    h = harness(world)
    async with h.worker():
        handle = await h.start(FailbackWorkflow.run, FailbackInput(runbook=rb, original_region=HOME, requested_by="alice"))
        progress = await wait_for(handle, lambda p: p.waiting_for == "approval")
        assert progress.waiting_cause == "writes healthy?" and world.changes == []  # before_shift: before any step
        with pytest.raises(WorkflowUpdateFailedError) as refused:
            await handle.execute_update(FailbackWorkflow.approve, ApproveInput(by="alice"))
        assert "four eyes: alice started this run" in refused.value.cause.message
        await handle.execute_update(FailbackWorkflow.approve, ApproveInput(by="bob"))
        result = await handle.result()
    assert result.status == "completed", result.messages
    assert world.dns_at_request == [{HOME: 100, DR: 0}]  # after_shift: after 100 %
    assert receiver.received.effects[0].body == {"serving": HOME}
    step = next(p for p in result.phases if p.name == "block:dba-confirms")
    assert "approved by bob" in step.detail


async def test_an_abort_during_a_block_lets_it_settle_then_undoes_it(own_harness, receiver):
    rb = with_blocks([flags(receiver.url, at="before_switch")])
    world = BlockWorld.normal(rb, hold=(c.BLOCK_HTTP, 1))
    h = own_harness(world)
    async with h.worker():
        handle = await h.start(FailoverWorkflow.run, FailoverInput(runbook=rb, failed_region=HOME))
        finished = asyncio.ensure_future(handle.result())
        await only_held_activity_pending(handle, world, "block:flags")
        update = await handle.start_update(
            FailoverWorkflow.abort, AbortInput(by="test"), wait_for_stage=WorkflowUpdateStage.ACCEPTED
        )
        await wait_for(handle, lambda p: any("settles first" in m for m in p.messages))
        world.release.set()
        result = await finished
        await update.result()
    assert result.status == "aborted" and world.cancelled == []  # the request was never cut
    assert world.changes == []
    keys = [d.key for d in receiver.received.effects]
    assert len(keys) == 2 and keys[1] == keys[0] + "/undo"



async def test_the_writer_follows_the_traffic_and_a_lag_above_max_lag_stops_a_graceful_failover(harness):
    rb = with_blocks([REGISTRY_DB])
    world = BlockWorld.normal(rb)
    world.lag = 45
    result, _ = await harness(world).run(FailoverWorkflow.run, FailoverInput(runbook=rb, failed_region=HOME))
    assert result.status == "failed" and world.changes == [] and world.writer_moves == []
    assert any("lag is 45s, above max_lag 30s" in m for m in result.messages)

    world = BlockWorld.normal(rb)
    result, _ = await harness(world).run(
        FailoverWorkflow.run, FailoverInput(runbook=rb, failed_region=HOME, strategy="ungraceful")
    )
    assert result.status == "completed", result.messages
    assert world.writer_moves[0][:2] == (DR, "ungraceful")  # failed over, data loss allowed

    # Failback: home is the writer again before the first shift step.
    back = BlockWorld(runbook=rb, **{k: v for k, v in vars(after_failover(rb, HOME, {DR: 100})).items() if k != "runbook"})
    back.writer = DR
    result, handle = await harness(back).run(FailbackWorkflow.run, FailbackInput(runbook=rb, original_region=HOME))
    assert result.status == "completed", result.messages
    assert back.writer_moves == [(HOME, "graceful", {HOME: 0, DR: 100})] and back.changes[0][HOME] > 0
    # The report draws the block as a phase with its own step, beside the restore's.
    rows = [(b.depth, b.label) for b in report.build(report.read(await handle.fetch_history())).bars]
    at = rows.index((0, "block:registry-db"))
    assert rows[at + 1][0] == 1 and rows[at + 1][1].startswith(c.BLOCKS_AURORA_SWITCH), rows
    restore = rows.index((0, "restore"))
    assert not any(label.startswith(c.BLOCKS_AURORA_SWITCH) for _, label in rows[restore + 1 : at])


async def test_readiness_checks_each_block_and_a_lag_above_max_lag_is_not_ready(env, receiver):
    token = {"headers_from_env": {"Authorization": "FLAGS_TOKEN"}}
    flagged = flags(receiver.url)
    flagged["request"] = {**flagged["request"], **token}
    rb = with_blocks([REGISTRY_DB, flagged])
    world = BlockWorld.normal(rb)
    world.http = HttpBlockActivities(env={"FLAGS_TOKEN": "t"})
    assert (await readiness(env.client, world)).ready
    world.lag, world.http = 45, HttpBlockActivities(env={})
    checks = {ch.name: ch for ch in (await readiness(env.client, world)).checks}
    assert not checks["block registry-db"].ready and "lag is 45s, above max_lag 30s" in checks["block registry-db"].detail
    assert not checks["block flags"].ready and "FLAGS_TOKEN" in checks["block flags"].detail
    assert world.writer_moves == [] and receiver.received.deliveries == []  # read-only


async def test_a_block_in_the_dark_region_left_is_skipped_with_a_note(harness):
    stop = {"name": "stop-writers", "kind": "scale", "at": "deactivate", "region": "{source}", "workloads": [WRITERS]}
    rb = with_blocks([stop])
    world = BlockWorld.normal(rb)
    world.dark.add(HOME)
    result, _ = await harness(world).run(
        FailoverWorkflow.run, FailoverInput(runbook=rb, failed_region=HOME, strategy="ungraceful")
    )
    assert result.status == "completed", result.messages
    step = next(p for p in result.phases if p.name == "block:stop-writers")
    assert step.outcome == "skipped" and "us-east-1 was unreachable in preflight" in step.detail
    assert ("us-east-1", "exact") not in world.scale_calls

"""The data tier's blocks in a run (workflows/blocks.py): an Aurora global database whose
writer follows the traffic (aurora_global) and a Kubernetes Job run to completion
(kubernetes_job). What the activities do is in activities/blocks/; here, what a run asks of
them, from the block and the run's {source} / {target}.

Aurora: a graceful run (a graceful failover, every failback) makes the target the writer by
a switchover, refused above the block's max_lag, and stops in preflight when the lag is
already above it (before any change); an ungraceful failover, or a graceful one whose source
region's RDS does not answer, fails over with data loss allowed (the activity says which it
did and why). Undone, when the run ends with the traffic where it started, by a switchover
back to the source.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities import contracts as c
    from drpilot.domain.blocks import Block, substitute
    from workflows import block_calls as calls
    from workflows.failures import PhaseFailed

if TYPE_CHECKING:
    from workflows.blocks import Blocks


def _members(blocks: Blocks, block: Block) -> dict[str, str]:
    assert block.members is not None
    return {r: block.members[r] for r in (blocks.source, blocks.target) if r in block.members}


def aurora_switch_input(blocks: Blocks, block: Block, source: str, target: str, graceful: bool) -> c.AuroraSwitchInput:
    assert block.global_cluster is not None
    return c.AuroraSwitchInput(
        block=block.name, global_cluster=block.global_cluster, members=_members(blocks, block),
        source=source, target=target, mode="graceful" if graceful else "ungraceful",
        max_lag_seconds=block.lag_limit.total_seconds(), speed=blocks.run.speed,
    )


async def aurora_preflight(blocks: Blocks, block: Block, where: str) -> str:
    assert block.global_cluster is not None
    source, target = blocks.source, blocks.target
    state = await calls.aurora_read(c.AuroraReadInput(
        block=block.name, global_cluster=block.global_cluster, members=_members(blocks, block), target=target,
    ))
    if not state.exists:
        raise PhaseFailed(f"{where}: {'; '.join(state.problems)}")
    # The region left may be dark (its RDS does not answer): the switch then fails over. A
    # switchover already on its way to the target is one a retried run waits for.
    toward = block.members[target] if block.members else ""
    fatal = [
        p for p in state.problems
        if not p.startswith(f"{source}'s") and not (state.operation and state.operation.endswith(toward) and p.endswith(state.operation))
    ]
    if fatal:
        raise PhaseFailed(f"{where}: {'; '.join(fatal)}")
    lag, limit = state.lag_seconds, block.lag_limit.total_seconds()
    if blocks.graceful and state.writer_region != target and lag is not None and lag > limit:
        raise PhaseFailed(
            f"{where}: {target}'s replication lag is {lag:g}s, above max_lag {limit:g}s: a graceful switchover would "
            "wait for it or lose writes; nothing changed (wait for the lag to fall, or fail over ungracefully)"
        )
    writer = state.writer_region or state.writer_arn or "none"
    shown = "unknown" if lag is None else f"{lag:g}s"
    return f"{where}: writer now {writer}, {target}'s lag {shown}"


async def aurora_do(blocks: Blocks, block: Block) -> str:
    work = calls.aurora_switch(aurora_switch_input(blocks, block, blocks.source, blocks.target, blocks.graceful))
    result = await blocks.settle(block, work)
    lag = "unknown" if result.lag_seconds is None else f"{result.lag_seconds:g}s"
    loss = ", data loss allowed" if result.data_loss_allowed else ""
    return f"writer {result.writer_before} -> {result.writer_after} ({result.mode}{loss}; lag {lag}): {result.reason}"


def aurora_undo(blocks: Blocks, block: Block):
    """The writer back to the source, where the traffic is again."""
    return calls.aurora_switch(aurora_switch_input(blocks, block, blocks.target, blocks.source, True))


def job_input(blocks: Blocks, block: Block) -> c.JobRunInput:
    assert block.namespace is not None and block.job is not None
    region = blocks.region(block)
    info = workflow.info()
    return c.JobRunInput(
        run_id=f"{info.workflow_id}/{info.run_id}", block=block.name, region=region,
        context=blocks.run.runbook.regions[region].kube.context, namespace=block.namespace,
        manifest=substitute(block.job, blocks.source, blocks.target),
        timeout_seconds=block.run_timeout.total_seconds(), speed=blocks.run.speed,
    )


async def job_preflight(blocks: Blocks, block: Block, where: str) -> str:
    run = job_input(blocks, block)
    found = await calls.job_preflight(c.JobPreflightInput(**run.model_dump(include=set(c.JobPreflightInput.model_fields))))
    if not found.reachable and run.region == blocks.source:
        blocks.unreachable |= {run.region}
        return f"{where}: {run.region} not reachable, so it will be skipped"
    if found.problems:
        raise PhaseFailed(f"{where}: {'; '.join(found.problems)}")
    return f"{where}: Job {block.namespace}/{found.job} in {run.region}"


async def job_do(blocks: Blocks, block: Block) -> str:
    result = await blocks.settle(block, calls.job_run(job_input(blocks, block)))
    again = "" if result.created else " (found from an earlier attempt)"
    last = f"; last log line: {result.log_tail[-1]}" if result.log_tail else ""
    return f"Job {result.namespace}/{result.job} in {result.region} completed{again}{last}"

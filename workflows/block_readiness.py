"""A runbook's blocks in readiness (workflows/readiness.py): each block's read-only check
(`Blocks.check`, the one a run's preflight makes) as a readiness check, for a failover from
the primary to its first target, the direction a drill rehearses. A block that would stop a
failover before any change (an Aurora lag above max_lag, a missing token, a Deployment that
is not there, a Job the cluster refuses) is not ready; so is one whose region does not answer."""

from __future__ import annotations

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from activities.contracts import ReadinessCheck
    from drpilot.domain.blocks import Block
    from drpilot.domain.runbook import Runbook
    from workflows.blocks import REGIONAL, Blocks
    from workflows.branches import together
    from workflows.facts import RunFacts
    from workflows.failures import PhaseFailed, explain
    from workflows.operator import Operator
    from workflows.plan import failover_targets
    from workflows.timeline import Timeline


async def block_checks(runbook: Runbook) -> list[ReadinessCheck]:
    timeline = Timeline()
    facts = RunFacts(runbook=runbook, action="failover", trigger="cli", speed=1.0, requested_by="", rehearsal=False)
    blocks = Blocks(run=facts, timeline=timeline, operator=Operator(timeline=timeline), approval=None, on_rollback=lambda: None)
    blocks.source, blocks.target = runbook.primary, failover_targets(runbook, runbook.primary, None)[0]
    return await together(*(_check(blocks, b) for b in runbook.spec.blocks))


async def _check(blocks: Blocks, block: Block) -> ReadinessCheck:
    name = f"block {block.name}"
    try:
        detail = await blocks.check(block)
    except PhaseFailed as exc:
        return ReadinessCheck(name=name, ready=False, detail=str(exc))
    except ActivityError as exc:
        return ReadinessCheck(name=name, ready=False, detail=explain(exc))
    reachable = block.kind not in REGIONAL or blocks.region(block) not in blocks.unreachable
    return ReadinessCheck(name=name, ready=reachable, detail=detail)

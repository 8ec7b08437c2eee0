"""A drill's result and its evidence pack: what it did, written as JSON to spec.drills.evidence."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from activities import contracts as c
    from drpilot import __version__
    from workflows.failures import explain
    from workflows.plan import format_weights
    from workflows.timeline import Timeline
    from workflows.types import DrillInput, DrillResult, DrillStatus, RunResult

EVIDENCE_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=30), maximum_attempts=10)


def evidence_name(result: DrillResult, temporal_run_id: str) -> str:
    """One object per drill, sorting by time: RUNBOOK/20261205T100000Z-rehearsal-RUNID.json. The
    whole run id: UUIDv7 run ids begin with their time, so a prefix of two drills started in the
    same second would collide."""
    return f"{result.runbook}/{result.started_at:%Y%m%dT%H%M%SZ}-{result.mode}-{temporal_run_id}.json"


def drill_result(
    input: DrillInput, status: DrillStatus, *, reason: str, timeline: Timeline, failover: RunResult | None,
    failback: RunResult | None, firing: list[str],
) -> DrillResult:
    """The drill so far: its own phases, its children's results, every change and approval."""
    info = workflow.info()
    fo, fb = failover, failback
    rto = fo.rto_seconds if fo else None
    approvals = [  # the run's own, and its blocks' ("block:NAME approved by ...")
        f"{r.action} {m}" for r in (fo, fb) if r is not None for m in r.messages
        if m.startswith("approved by ") or (m.startswith("block:") and " approved by " in m)
    ]
    changes = [
        f"{r.action} {ch.phase}: DNS {format_weights(ch.before)} -> {format_weights(ch.after)} ({ch.status}, {ch.at:%H:%M:%SZ})"
        for r in (fo, fb) if r is not None for ch in r.dns_changes
    ]
    changes += [  # the runbook's blocks that did something, and their undo (spec.blocks)
        f"{r.action} {p.name}: {p.detail}" for r in (fo, fb) if r is not None for p in r.phases
        if p.name.startswith(("block:", "undo:")) and p.outcome == "ok"
    ]
    changes += [f"{p.name}: {p.detail}" for p in timeline.phases if p.name == "cleanup" and p.outcome == "ok"]
    return DrillResult(
        drill_id=info.workflow_id, runbook=input.runbook.name, mode=input.mode,
        from_region=input.from_region, status=status, reason=reason, phases=list(timeline.phases),
        failover=fo, failback=fb, rto_seconds=rto, rto_seconds_unscaled=fo.rto_seconds_unscaled if fo else None,
        objective_rto_seconds=input.runbook.spec.objectives.rto.total_seconds(),
        rto_met=fo.rto_met if fo else None, firing_alerts=list(firing), approvals=approvals,
        changes=changes, requested_by=input.requested_by, scheduled_by=input.scheduled_by,
        speed=input.speed, started_at=info.workflow_start_time, ended_at=workflow.now(),
        messages=list(timeline.messages), runbook_digest=input.runbook.digest(), drpilot_version=__version__,
    )


async def write(input: DrillInput, result: DrillResult, timeline: Timeline) -> str:
    """The phase "evidence": the pack written where the runbook says; its URI, "" if it was not."""
    timeline.begin("evidence")
    if input.runbook.spec.drills is None:
        timeline.end("evidence", "skipped", "the runbook has no spec.drills.evidence")
        return ""
    try:
        written: c.EvidenceResult = await workflow.execute_activity(
            c.DRILL_EVIDENCE,
            c.EvidenceInput(
                runbook=input.runbook, name=evidence_name(result, workflow.info().run_id),
                body=result.model_dump_json(indent=2),
            ),
            result_type=c.EvidenceResult, start_to_close_timeout=timedelta(seconds=60),
            retry_policy=EVIDENCE_RETRY, summary="write the evidence pack",
        )
    except ActivityError as exc:
        timeline.end("evidence", "failed", explain(exc))
        timeline.say(f"evidence NOT written: {explain(exc)}")
        return ""
    timeline.end("evidence", "ok", written.uri)
    return written.uri

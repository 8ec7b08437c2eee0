"""DrillWorkflow: a game-day drill. Fail over away from a region, soak, fail back, keep the
evidence (docs/architecture.md, "Drills").

    admission -> preflight (blocking alerts and queries, rehearsal on a sandbox worker) -> failover
    -> soak (outcome condition) -> failback | cleanup -> evidence

The failover and the failback are CHILD runs of the real FailoverWorkflow and
FailbackWorkflow, so every guard of a real run applies to a drill (health gates, fresh
checks, drift holds, guarded destinations, compensation, approvals in `live` mode).

How a drill holds its runbook: the drill itself claims the runbook at admission
(workflows/admission.py), under its own workflow id, before anything else; its children
run under that claim and claim nothing (their release signal at the end names a run id
admission does not hold, which it ignores). So from the first step to the last nothing else
(CLI, webhook, another drill) can start a run on the runbook or its DNS records in
between the failover and the failback, and a refusal names the drill and how to abort it
(`drpilot abort DRILL_ID`). The drill claims through an activity (activities/front_door.py) rather
than at the front door, because a Temporal Schedule starts it with no front door in
between; a CLI start goes the same way so both behave alike. The drill releases the claim as
it ends, whatever the outcome; a drill terminated in Temporal is found stale by the next
front door, like any run.

Outcomes: `blocked` (nothing was touched: the runbook was held, a blocking alert fired or
blocking query returned a series, or Alertmanager / Prometheus could not be read), `completed`, `failed` (a child did not complete, or the
outcome condition fired during the soak), `aborted` (an operator, or Temporal's cancel).
Whatever happened after the failover started, cleanup runs: DNS not home -> a failback
child; DNS home -> standby regions back to standby replicas. A failed or aborted drill ends
as a Temporal failure (after its evidence is written and its claim released) so a schedule
created with pause-on-failure pauses until someone looks.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributePair, TypedSearchAttributes
from temporalio.exceptions import ActivityError, ApplicationError
from temporalio.workflow import ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    from activities import contracts as c
    from activities.contracts import Admission, Claim
    from drpilot.domain.runbook import Role
    from workflows import admission, calls, evidence
    from workflows.branches import settled, together
    from workflows.failback import FailbackWorkflow
    from workflows.failover import FailoverWorkflow
    from workflows.failures import explain
    from workflows.plan import failback_home, format_weights, serving
    from workflows.soak import soak
    from workflows.timeline import Timeline
    from workflows.types import (
        OUTCOME,
        RUNBOOK,
        AbortInput,
        ControlResult,
        DrillInput,
        DrillResult,
        DrillStatus,
        FailbackInput,
        FailoverInput,
        RunResult,
    )

CLAIM = c.DRILL_CLAIM
T = TypeVar("T")


def claim_of(input: DrillInput, run_id: str) -> Claim:
    dns = input.runbook.spec.dns
    return Claim(
        run_id=run_id, action="drill", runbook=input.runbook.name,
        dns_records=[f"{dns.provider.value}/{dns.zone}/{r.name}" for r in dns.records],
        request={"from": input.from_region, "mode": input.mode, "speed": f"{input.speed:g}"},
        trigger="drill", requested_by=input.requested_by or input.scheduled_by,
        reason=f"{input.mode} drill",
    )


class Blocked(Exception):
    """The drill does not start; nothing was changed."""


@workflow.defn
class DrillWorkflow:
    @workflow.init
    def __init__(self, input: DrillInput) -> None:
        self.input = input
        self.timeline = Timeline()  # its phases opened and closed by hand (begin / end)
        self.firing: list[str] = []
        self.failover: RunResult | None = None
        self.failback: RunResult | None = None
        self.child: Any = None  # the child run in flight: an abort cancels it (it compensates)
        self.abort_request: AbortInput | None = None
        self.result: DrillResult | None = None
        self.failure = ""

    # ------------------------------------------------------------------ the drill
    @workflow.run
    async def run(self, input: DrillInput) -> DrillResult:
        status: DrillStatus = "completed"
        admitted = False
        try:
            admitted = await self.claim()
            await self.preflight()
            status = await self.exercise()
        except Blocked as exc:
            status, self.failure = "blocked", str(exc)
            self.timeline.say(f"blocked: {exc}; nothing was changed")
        except asyncio.CancelledError:
            # Cancelled in Temporal before the failover started: nothing to undo.
            status, self.failure = "aborted", "cancelled through Temporal"
        result = await settled(self.finish(status, admitted))
        if status in ("failed", "aborted"):
            # A Temporal failure, so a schedule created with pause-on-failure pauses; the result
            # rides along (the CLI reads it) and is in the evidence pack.
            raise ApplicationError(
                f"drill {status}: {self.failure}", result, type=c.ErrorType.DRILL_FAILED, non_retryable=True
            )
        return result

    async def claim(self) -> bool:
        self.timeline.begin("admission")
        info = workflow.info()
        try:
            answer: Admission = await workflow.execute_activity(
                CLAIM, claim_of(self.input, info.workflow_id), result_type=Admission,
                start_to_close_timeout=timedelta(seconds=90), retry_policy=RetryPolicy(maximum_attempts=5),
                summary=f"claim {self.input.runbook.name}",
            )
        except ActivityError as exc:
            self.timeline.end("admission", "failed", explain(exc))
            raise Blocked(f"could not claim {self.input.runbook.name} at admission: {explain(exc)}") from None
        if not (answer.admitted or answer.attach) or answer.holder is None:
            held = answer.holder.claim if answer.holder else None
            who = f"{held.run_id} ({held.trigger} {held.requested_by})".strip() if held else "another run"
            self.timeline.end("admission", "failed", f"held by {who}")
            raise Blocked(f"{answer.conflict or 'the runbook'} is held by {who}")
        self.timeline.end("admission", "ok", f"{self.input.runbook.name} held by this drill until it ends")
        return True

    async def preflight(self) -> None:
        """Read-only: the blocking conditions, and (rehearsal) that the worker points at a sandbox."""
        self.timeline.begin("preflight")
        try:
            alerts = await calls.firing_alerts(self.input.runbook)
        except ActivityError as exc:
            self.timeline.end("preflight", "failed", explain(exc))
            raise Blocked(f"cannot tell whether a blocking alert fires or query holds ({explain(exc)})") from None
        if self.input.mode == "rehearsal" and not alerts.sandbox:
            self.timeline.end("preflight", "failed", "the worker does not point at a sandbox")
            raise Blocked(
                "a rehearsal drill runs only on a worker pointed at a sandbox twin (DRPILOT_SANDBOX=1); "
                "use --mode live for the real environment"
            )
        if alerts.firing:
            self.firing = alerts.firing
            self.timeline.end("preflight", "failed", f"firing: {', '.join(alerts.firing)}")
            raise Blocked(f"blocking condition(s): {', '.join(alerts.firing)} (guardrails.blocking_alerts / blocking_queries)")
        where = f"no blocking condition in {alerts.source}" if alerts.source else "the runbook names no blocking condition"
        self.timeline.end("preflight", "ok", where)

    async def exercise(self) -> DrillStatus:
        """Failover, soak, then cleanup whatever happened; the drill's status."""
        status: DrillStatus = "completed"
        if self.abort_request is not None:  # aborted before the failover started: nothing to undo
            self.failure = f"aborted by {self.abort_request.by or 'unknown'} before the failover"
            return "aborted"
        try:
            self.failover = await self.child_run("failover", FailoverWorkflow.run, FailoverInput(
                runbook=self.input.runbook, failed_region=self.input.from_region, trigger="drill",
                reason=f"{self.input.mode} drill {workflow.info().workflow_id}", speed=self.input.speed,
                requested_by=self.input.requested_by, rehearsal=self.input.mode == "rehearsal",
            ))
            if self.failover.status != "completed":
                status = "aborted" if self.failover.status == "aborted" else "failed"
                self.failure = f"the failover {self.failover.status}: {(self.failover.messages or [''])[-1]}"
            elif self.abort_request is None:
                problem, firing = await soak(
                    self.input, serving(self.failover.final_state.dns), self.timeline, lambda: self.abort_request is not None
                )
                self.firing = firing or self.firing
                if problem:
                    status, self.failure = "failed", f"outcome condition during the soak: {problem}"
        except asyncio.CancelledError:
            self.abort_request = self.abort_request or AbortInput(by="temporal", reason="cancellation requested through Temporal")
        if self.abort_request is not None:
            status = "aborted"
            self.failure = f"aborted by {self.abort_request.by or 'unknown'}: {self.abort_request.reason or 'no reason'}"
            self.timeline.say(self.failure)
        # Cleanup always runs, and is not cut short by a second cancel.
        restored = await settled(self.restore())
        if self.abort_request is not None:
            return "aborted"  # also when the abort came during the restore
        if not restored and status == "completed":
            status = "failed"
        return status

    async def child_run(self, name: str, run: Any, arg: Any) -> RunResult:
        self.timeline.begin(name)
        info = workflow.info()
        handle = await workflow.start_child_workflow(
            run, arg, id=f"{info.workflow_id}/{name}", task_queue=info.task_queue,
            # Terminating a drill must not leave DNS mid-shift: the child is asked to abort
            # (it compensates) instead of being killed with it.
            parent_close_policy=ParentClosePolicy.REQUEST_CANCEL,
            search_attributes=TypedSearchAttributes([SearchAttributePair(RUNBOOK, self.input.runbook.name)]),
        )
        self.child = handle
        self.timeline.say(f"{name} started as {handle.id}")
        try:
            raw = await handle
        finally:
            self.child = None
        result = raw if isinstance(raw, RunResult) else RunResult.model_validate(raw)
        outcome = "ok" if result.status == "completed" else ("aborted" if result.status == "aborted" else "failed")
        rto = f"; RTO {result.rto_seconds:.1f}s" if result.rto_seconds is not None and name == "failover" else ""
        self.timeline.end(name, outcome, f"{handle.id} {result.status}; DNS {format_weights(result.final_state.dns)}{rto}")
        return result

    async def restore(self) -> bool:
        """Put the runbook back as normal: fail back when DNS is not home, else return the
        standby regions to standby. True when everything is back."""
        rb = self.input.runbook
        home_region = self.input.from_region
        try:
            now = (await calls.dns_read(rb)).weights()
        except ActivityError as exc:
            self.timeline.say(f"cleanup could not read DNS ({explain(exc)}); failing back to be safe")
            now = {}
        home = failback_home(rb, home_region, now) if now else {}
        if now and now == home:
            return await self.cleanup()
        self.failback = await self.child_run("failback", FailbackWorkflow.run, FailbackInput(
            runbook=rb, original_region=home_region, trigger="drill",
            reason=f"{self.input.mode} drill {workflow.info().workflow_id}: restore", speed=self.input.speed,
            requested_by=self.input.requested_by, rehearsal=self.input.mode == "rehearsal",
        ))
        if self.failback.status != "completed":
            self.failure = "; ".join(x for x in (self.failure, f"the failback {self.failback.status}: "
                                                  f"{(self.failback.messages or [''])[-1]}; DNS is NOT home") if x)
            self.timeline.say(self.failure)
            return False
        return True

    async def cleanup(self) -> bool:
        """DNS never left home (or came back through compensation): the failover may still have
        scaled the standby up, which compensation never undoes."""
        rb = self.input.runbook
        standby = [n for n, r in rb.regions.items() if r.role is Role.standby]
        self.timeline.begin("cleanup")
        try:
            done = await together(*(calls.kube_scale(rb, r, "standby", self.input.speed) for r in standby))
        except ActivityError as exc:
            self.timeline.end("cleanup", "failed", explain(exc))
            self.failure = "; ".join(x for x in (self.failure, f"cleanup: {explain(exc)}") if x)
            return False
        self.timeline.end("cleanup", "ok", "; ".join(f"{s.region} back to standby ({len(s.changed)} changed)" for s in done) or "no standby region")
        return True

    # ------------------------------------------------------------------ the end
    def drill_result(self, status: DrillStatus) -> DrillResult:
        return evidence.drill_result(
            self.input, status, reason=self.failure, timeline=self.timeline, failover=self.failover,
            failback=self.failback, firing=self.firing,
        )

    async def finish(self, status: DrillStatus, admitted: bool) -> DrillResult:
        """Evidence, outcome, release: whatever happened before."""
        uri = await evidence.write(self.input, self.drill_result(status), self.timeline)
        self.result = self.drill_result(status).model_copy(update={"evidence_uri": uri})
        workflow.upsert_search_attributes([OUTCOME.value_set(status)])
        if admitted:
            await admission.release_claim(status)
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self.result

    # ------------------------------------------------------------------ operator control
    @workflow.query
    def drill(self) -> DrillResult:
        """The drill so far (ended_at None while it runs), or its result."""
        return self.result or self.drill_result("running").model_copy(update={"ended_at": None})

    @workflow.update
    async def abort(self, request: AbortInput) -> ControlResult:
        """Stop the drill: the running child is aborted (it compensates), then cleanup restores."""
        self.abort_request = request
        self.timeline.say(f"abort requested by {request.by or 'unknown'}" + (f": {request.reason}" if request.reason else ""))
        if self.child is not None:
            self.child.cancel()
        # Answered at once: the restore that follows may be a whole failback.
        return ControlResult(
            phase=self.timeline.phases[-1].name if self.timeline.phases else "starting",
            message="aborting: the running step compensates, then the drill restores the runbook "
            f"(a failback when DNS is not home); follow it with `drpilot drill status {workflow.info().workflow_id}`",
        )

    @abort.validator
    def _check_abort(self, request: AbortInput) -> None:
        if self.result is not None:
            raise ValueError(f"the drill has finished ({self.result.status})")
        if self.abort_request is not None:
            raise ValueError("the drill is already being aborted")

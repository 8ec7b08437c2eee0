"""What every run shares: the collaborators it is composed of, its execution and result, and
the Temporal handlers operators reach it through.

`Run` is the base of FailoverWorkflow and FailbackWorkflow. It is composed of
- `timeline` (workflows/timeline.py): phases, messages; read by the progress query and
  the result;
- `operator` (workflows/operator.py): pause, resume, abort and the holds they end;
- `approval` (workflows/approval.py): whether the run needs one, the wait, who gave it;
- `gates` (workflows/gates.py): health gates, fresh checks, the RPO check;
- `workloads` (workflows/workloads.py): bring a region up, restart pods, warm-up;
- `notifications` (workflows/notifications.py): spec.notifications, beside the procedure;
- `pace` (workflows/pace.py): the rehearsal speed and the procedure's own sleeps;
- `traffic` (workflows/traffic.py): the one owner of DNS; every weight goes through it;
- `verdict` (workflows/verdict.py): the RTO and its verdict against the objective;
- `blocks` (workflows/blocks.py): the runbook's blocks at the procedure's stages, and their undo.
All but `timeline`, `operator` and `pace` are told the run once, as `RunFacts`
(workflows/facts.py): its runbook, action, trigger, speed, requester.
It owns `execute()`: the steps, then compensation (shielded from cancellation) when they did
not complete, then the result, the outcome search attribute and the admission release.
Workloads are never scaled down by compensation: during an outage spare capacity is cheap
and missing capacity is not. The handlers (`progress`, `alert_resolved`, `approve`, `abort`,
`pause`, `resume` with their validators) are part of the registered workflow definition:
they stay here, and delegate.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from datetime import datetime
from typing import TypeVar

from temporalio import workflow
from temporalio.exceptions import is_cancelled_exception

with workflow.unsafe.imports_passed_through():
    from workflows import admission, metrics, projection
    from workflows.approval import Approval
    from workflows.blocks import Blocks
    from workflows.branches import settled
    from workflows.facts import RunFacts
    from workflows.failures import Aborted, NoHealthyDestination, PhaseFailed, explain
    from workflows.gates import Gates
    from workflows.notifications import Notifications
    from workflows.operator import Operator
    from workflows.pace import Pace
    from workflows.plan import format_weights
    from workflows.timeline import Timeline
    from workflows.traffic import Traffic, same
    from workflows.types import (
        OUTCOME,
        AbortInput,
        Action,
        AlertResolved,
        ApproveInput,
        ControlResult,
        Outcome,
        PauseInput,
        Progress,
        RunInput,
        RunResult,
        Status,
        WorldState,
    )
    from workflows.verdict import Verdict
    from workflows.versions import Patches
    from workflows.workloads import Workloads
    from workflows.world import read_world

T = TypeVar("T")


class Run:
    action: Action

    def __init__(self, input: RunInput) -> None:
        self.input = input
        runbook, speed = input.runbook, input.speed
        self.runbook = runbook
        self.speed = speed
        self.trigger = input.trigger
        self.requested_by = input.requested_by
        self.reason = input.reason
        self.patches = Patches()  # the release's behaviour this run replays; read in execute()
        self.timeline = Timeline(self.refresh_details, self._outcome_of)
        self.operator = Operator(timeline=self.timeline)
        facts = RunFacts(
            runbook=runbook, action=self.action, trigger=input.trigger, speed=speed,
            requested_by=input.requested_by, rehearsal=input.rehearsal,
            override_safety_rules=tuple(input.override_safety_rules),
        )
        self.notifications = Notifications(run=facts, patches=self.patches, timeline=self.timeline)
        self.approval = Approval(
            run=facts, timeline=self.timeline, operator=self.operator, notifications=self.notifications,
        )
        self.pace = Pace(speed=speed, patches=self.patches)
        self.gates = Gates(run=facts, timeline=self.timeline, operator=self.operator)
        self.workloads = Workloads(run=facts, timeline=self.timeline)
        self.traffic = Traffic(
            run=facts, pace=self.pace, timeline=self.timeline, gates=self.gates, operator=self.operator,
            notifications=self.notifications, patches=self.patches,
        )
        self.verdict = Verdict(run=facts, timeline=self.timeline)
        self.blocks = Blocks(
            run=facts, timeline=self.timeline, operator=self.operator, approval=self.approval,
            on_rollback=self._roll_back_to_before,
        )
        self.before: WorldState | None = None  # the world preflight found
        self.step: str | None = None  # the shift step, e.g. "50%"
        self._steps: asyncio.Task | None = None
        self._result: RunResult | None = None
        # The critical path's context variable (workflows/projection.py keeps it here).
        self._rto_branch: ContextVar[projection.Path | None] | None = None

    @property
    def v2(self) -> bool:
        """The 0.2.0 behaviour (workflows/versions.py), which the procedures branch on."""
        return self.patches.v2

    @property
    def started_at(self) -> datetime:
        return workflow.info().workflow_start_time

    def phase(self, name: str):
        """The block as phase `name` of the timeline; how an exception ends it depends on
        whether the run is being aborted."""
        return self.timeline.phase(name)

    def _outcome_of(self, exc: BaseException) -> tuple[Outcome, str, list]:
        # Late-bound: the timeline is made before the operator it asks.
        return self.operator.outcome_of(exc)

    def refresh_details(self) -> None:
        # Shown in the Temporal UI next to the run.
        phase = ", ".join(self.timeline.running) or self.timeline.current()
        workflow.set_current_details(f"{self.action} {self.runbook.name}: {phase}; DNS {format_weights(self.traffic.held)}")

    def mark_recovered(self) -> None:
        self.verdict.recovered(self.started_at)

    # ------------------------------------------------------------------ the run
    async def execute(self, steps: Callable[[], Awaitable[None]]) -> RunResult:
        """Run the steps; on abort or failure compensate; then the result."""
        self.patches.read()
        self.blocks.read_patch()
        who = f" {self.requested_by}" if self.requested_by else ""
        why = f": {self.reason}" if self.reason else ""
        self.notifications.notify("started", f"{self.notifications.subject} started by {self.trigger}{who}{why}")
        status = await self._run_steps(steps)
        self.operator.finishing = True
        if status != "completed":
            status = await self._compensate(status)
        final = await self._shielded(read_world(self.runbook, self.traffic.held, self.timeline.say))
        self._result = self.result(status, final)
        # Aborted is told as failed: the run did not do what it was started for.
        event = {"completed": "completed", "rolled_back": "rolled_back"}.get(status, "failed")
        last = self.timeline.messages[-1] if self.timeline.messages else ""
        self.notifications.notify(event, f"{self.notifications.subject} {status}: {last}")
        if await self._shielded(self.notifications.collect()):
            self._result = self._result.model_copy(update={"messages": list(self.timeline.messages)})
        metrics.record_result(self._result)  # no command: safe for every release's histories
        workflow.set_current_details(f"{self.action} {self.runbook.name}: {status}")
        if self.v2:
            workflow.upsert_search_attributes([OUTCOME.value_set(status)])
            await admission.release_claim(status)
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self._result

    async def _run_steps(self, steps: Callable[[], Awaitable[None]]) -> Status:
        """The steps as a task an abort cancels; how they ended."""
        operator = self.operator
        if operator.abort is not None:
            return "aborted"
        self.verdict.start()
        self._steps = asyncio.create_task(steps())
        try:
            await self._steps
        except (Exception, asyncio.CancelledError) as exc:
            if operator.abort is None and is_cancelled_exception(exc):
                operator.abort = AbortInput(by="temporal", reason="cancellation requested through Temporal")
            if operator.abort is not None or isinstance(exc, Aborted):
                self.timeline.say(f"aborted: {operator.abort_text()}")
                return "aborted"
            status: Status = exc.status if isinstance(exc, PhaseFailed) else "failed"
            self.timeline.say(f"{status}: {explain(exc)}")
            return status
        return "completed"

    async def _compensate(self, status: Status) -> Status:
        """DNS back to the last good weights; "failed" when that could not be done."""
        try:
            await self._shielded(self.traffic.settle())
        except (Exception, asyncio.CancelledError) as exc:
            if isinstance(exc, NoHealthyDestination):
                self.timeline.say(f"compensation: {exc}")
            else:
                self.timeline.say(
                    f"could NOT return DNS to {format_weights(self.traffic.last_good or {})}: {explain(exc)}; "
                    "set the weights by hand"
                )
            return "failed"
        if self.blocks.done:
            if self.before is None or same(self.traffic.held, self.before.dns):
                await self._shielded(self.blocks.undo())
            else:
                self.timeline.say(f"blocks left as they are: traffic stays at {format_weights(self.traffic.held)}")
        return status

    def _roll_back_to_before(self) -> None:
        """A block with on_failure: rollback failed after the traffic moved: compensation
        returns the traffic to where the run found it (to the regions passing a check now)."""
        if self.before is not None:
            self.traffic.confirm(self.before.dns)

    async def _shielded(self, work: Awaitable[T]) -> T:
        """Finish `work` even if Temporal cancels the run meanwhile (0.2.0): compensation
        cut half-way would leave DNS mid-shift."""
        if not self.v2:
            return await asyncio.ensure_future(work)  # as 0.1.0 did: its histories replay so
        return await settled(
            work, lambda: self.timeline.say("cancellation requested while finishing: compensation goes on first")
        )

    def result(self, status: Status, final: WorldState) -> RunResult:
        info = workflow.info()
        rto = self.verdict.rto(status)
        return RunResult(
            run_id=info.workflow_id,
            temporal_run_id=info.run_id,
            action=self.action,
            runbook=self.runbook.name,
            status=status,
            phases=list(self.timeline.phases),
            rto_seconds=rto,
            objective_rto_seconds=self.verdict.objective,
            rto_seconds_unscaled=None if rto is None else self.verdict.unscaled(rto),
            projection=self.verdict.projection if rto is not None else None,
            final_state=final,
            before_state=self.before,
            speed=self.speed,
            started_at=self.started_at,
            ended_at=workflow.now(),
            weights_applied=list(self.traffic.applied),
            dns_changes=list(self.traffic.changes),
            messages=list(self.timeline.messages),
            trigger=self.trigger,
            requested_by=self.requested_by,
            approved_by=self.approval.approved_by,
            override_safety_rules=list(self.input.override_safety_rules),
            cold_starts=list(self.workloads.cold_starts),
        )

    # ------------------------------------------------------------------ operator control
    @workflow.query
    def progress(self) -> Progress:
        info, operator = workflow.info(), self.operator
        phase = "finished" if self._result is not None and not self.timeline.running else self.timeline.current()
        return Progress(
            run_id=info.workflow_id,
            action=self.action,
            runbook=self.runbook.name,
            state="finished" if self._result is not None else "running",
            status=self._result.status if self._result else None,
            phase=phase,
            step=self.step,
            weights=dict(self.traffic.held),
            target_weights=dict(self.traffic.target),
            waiting_for=operator.waiting_for,
            waiting_cause=operator.waiting_cause,
            drift=self.traffic.drift,
            approval_required=self.approval.required,
            approved_by=self.approval.approved_by,
            requested_by=self.requested_by,
            starter_may_approve=not self.approval.four_eyes,
            paused=operator.paused,
            aborting=operator.abort is not None and self._result is None,
            started_at=self.started_at,
            elapsed_seconds=(workflow.now() - self.started_at).total_seconds(),
            speed=self.speed,
            phases=list(self.timeline.phases),
            messages=list(self.timeline.messages),
            result=self._result,
        )

    @workflow.signal
    def alert_resolved(self, alert: AlertResolved) -> None:
        """Recorded in the timeline; a resolved alert never starts or stops anything."""
        ended = alert.ends_at.strftime("%H:%M:%SZ") if alert.ends_at else "now"
        self.timeline.say(f"alert {alert.name} resolved at {ended} ({alert.fingerprint or 'no fingerprint'}, via {alert.receiver or 'webhook'})")

    @workflow.update
    def approve(self, request: ApproveInput) -> ControlResult:
        message = self.approval.approve(request)
        return ControlResult(phase=self.timeline.current(), message=message)

    @approve.validator
    def _check_approve(self, request: ApproveInput) -> None:
        self.operator.refuse_when_over(self._result)
        self.approval.refuse_approve(request)

    @workflow.update
    async def abort(self, request: AbortInput) -> ControlResult:
        self.operator.request_abort(request)
        if self._steps is not None and not self._steps.done():
            self._steps.cancel()
        # Answer once compensation is done, so `drpilot abort` can say where DNS ended.
        await workflow.wait_condition(lambda: self._result is not None)
        assert self._result is not None
        return ControlResult(
            phase="finished",
            message=f"{self._result.status}; DNS {format_weights(self._result.final_state.dns)}",
            weights=self._result.final_state.dns,
        )

    @abort.validator
    def _check_abort(self, request: AbortInput) -> None:
        self.operator.refuse_when_over(self._result)

    @workflow.update
    def pause(self, request: PauseInput) -> ControlResult:
        self.operator.pause(request)
        return ControlResult(phase=self.timeline.current(), message="paused", weights=dict(self.traffic.held))

    @pause.validator
    def _check_pause(self, request: PauseInput) -> None:
        self.operator.refuse_when_over(self._result)
        self.operator.refuse_pause()

    @workflow.update
    def resume(self, request: PauseInput) -> ControlResult:
        message = self.operator.resume(request)
        return ControlResult(phase=self.timeline.current(), message=message, weights=dict(self.traffic.held))

    @resume.validator
    def _check_resume(self, request: PauseInput) -> None:
        self.operator.refuse_when_over(self._result)
        self.operator.refuse_resume()

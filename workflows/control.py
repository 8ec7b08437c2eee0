"""What every run shares: operator control, the gates' bookkeeping, execution and result.

`Run` is the base of FailoverWorkflow and FailbackWorkflow. It is composed of
- `timeline` (workflows/timeline.py): phases, messages; read by the progress query and
  the result;
- `traffic` (workflows/traffic.py): the one owner of DNS; every weight goes through it;
and owns itself:
- operator control: `approve`, `abort`, `pause`, `resume` (updates with validators), and
  the holds they end (approval, pause, drift);
- `waited`: whether the run waited (approval, pause, drift) since its last health gate,
  which makes the next DNS move check its destination again (`fresh_check`);
- `execute()`: the steps, then compensation (shielded from cancellation) when they did not
  complete, then the result, the outcome search attribute and the admission release.
Workloads are never scaled down by compensation: during an outage spare capacity is cheap
and missing capacity is not.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError, is_cancelled_exception

with workflow.unsafe.imports_passed_through():
    from activities import contracts as c
    from drpilot.domain.runbook import ApprovalPolicy, Runbook
    from workflows import admission, calls, metrics, projection
    from workflows.plan import PlanError, approval_required, format_weights
    from workflows.timeline import Timeline
    from workflows.traffic import NoHealthyDestination, Traffic
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
        ReleaseInput,
        RtoProjection,
        RunResult,
        Status,
        Trigger,
        WaitingFor,
        WorldState,
    )
    from workflows.versions import REHEARSAL_WAITS, SAFETY

T = TypeVar("T")


class PhaseFailed(Exception):
    """A gate or step failed: the run ends with `status` and this message, loudly, but as a
    result rather than a Temporal failure, so the timeline and evidence reach the caller."""

    def __init__(self, message: str, *, status: Status = "failed", evidence: list[Any] | None = None):
        super().__init__(message)
        self.status = status
        self.evidence = evidence or []


class Aborted(Exception):
    """The run stops here and compensates, as if an operator had sent `abort`."""


def error_type(exc: BaseException) -> str | None:
    """The activity's own error type (ApplicationError.type), e.g. KubeNotFound."""
    cause = exc.cause if isinstance(exc, ActivityError) else exc
    return cause.type if isinstance(cause, ApplicationError) else None


def explain(exc: BaseException) -> str:
    """One line for the timeline: which activity failed and the provider's own words."""
    if isinstance(exc, ActivityError):
        cause = exc.cause
        text = getattr(cause, "message", None) or str(cause or exc)
        return f"{exc.activity_type}: {text}"
    if isinstance(exc, ApplicationError | PhaseFailed | PlanError | Aborted | NoHealthyDestination):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


async def together(*branches: Awaitable[Any]) -> list[Any]:
    """Run independent branches in parallel; the first failure cancels the rest (after they
    stop) and is raised, so no activity is left running unobserved. Each branch keeps its
    own scaled waits; the RTO projection follows the longest (workflows/projection.py)."""
    paths, started = projection.fork(len(branches)), workflow.now()
    if paths is not None:
        branches = tuple(projection.along(p, b) for p, b in zip(paths, branches, strict=True))
    tasks = [asyncio.ensure_future(b) for b in branches]
    try:
        results = await asyncio.gather(*tasks)
        if paths is not None:
            projection.join(paths, started)
        return results
    except (Exception, asyncio.CancelledError):
        for task in tasks:
            if not task.done():
                task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


async def settled(work: Awaitable[T], on_cancel: Callable[[], None] | None = None) -> T:
    """Finish `work` even if Temporal cancels the workflow meanwhile: a compensation, a
    restore or an evidence write cut half-way would leave DNS mid-shift, the runbook moved,
    or a drill unrecorded. `on_cancel` says so in the timeline; the cancel is then ignored."""
    task = asyncio.ensure_future(work)
    while True:
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            if task.done():
                raise
            if on_cancel is not None:
                on_cancel()


def restore_name(action: str, runbook: str) -> str:
    """Velero Restore name: one per run, stable across retries and worker restarts."""
    run = workflow.info().run_id.split("-")[0]
    return f"drpilot-{action}-{runbook}"[:50].rstrip("-") + f"-{run}"


def region_evidence(region: str, evidence: list[c.CheckEvidence]) -> list[c.CheckEvidence]:
    return [e.model_copy(update={"check": f"{region}: {e.check}"}) for e in evidence]


class Run:
    action: Action

    def setup(
        self, runbook: Runbook, speed: float, trigger: Trigger, policy: ApprovalPolicy, *, by: str = "", reason: str = "",
        rehearsal: bool = False,
    ) -> None:
        self.runbook = runbook
        self.speed = speed
        self.trigger = trigger
        self.requested_by = by
        self.reason = reason
        self._deliveries: list[asyncio.Future] = []  # notifications in flight (spec.notifications)
        self._undelivered: list[str] = []
        self.timeline = Timeline(self.refresh_details)
        self.traffic = Traffic(self)
        self.v2 = False  # the 0.2.0 behaviour (workflows/versions.py); read in execute()
        self.v3 = False  # the 0.3.0 behaviour, likewise
        self.waited = False  # a wait (approval, pause, drift) came after the last gate
        self._approval_policy = policy
        self.rehearsal = rehearsal  # a rehearsal drill against the sandbox: nobody to approve
        self._approval_required = approval_required(policy, trigger) and not rehearsal
        self._approved_by: str | None = None
        self._step: str | None = None
        self._before: WorldState | None = None
        self._paused = False
        self._hold: WaitingFor | None = None  # what a hold_for() waits on until `resume`
        self._resumed_by = ""
        self._waiting_for: WaitingFor | None = None
        self._abort: AbortInput | None = None
        self._steps: asyncio.Task | None = None
        self._finishing = False
        self._result: RunResult | None = None
        self.rto_seconds: float | None = None
        self._path: projection.Path | None = None  # the run's critical path (RTO projection)
        self.projection: RtoProjection | None = None

    explain = staticmethod(explain)

    @property
    def started_at(self) -> datetime:
        return workflow.info().workflow_start_time

    # ------------------------------------------------------------------ timeline
    def phase(self, name: str):
        """The block as phase `name` of the timeline; how an exception ends it depends on
        whether the run is being aborted."""
        return self.timeline.phase(name, self._outcome_of)

    def _outcome_of(self, exc: BaseException) -> tuple[Outcome, str, list]:
        outcome: Outcome = "aborted" if self._abort or is_cancelled_exception(exc) else "failed"
        if isinstance(exc, PhaseFailed) and exc.status == "rolled_back":
            outcome = "rolled_back"
        if isinstance(exc, Aborted):
            outcome = "aborted"
        evidence = exc.evidence if isinstance(exc, PhaseFailed | NoHealthyDestination) else []
        return outcome, explain(exc) if outcome != "aborted" else self._abort_text(), evidence

    def refresh_details(self) -> None:
        # Shown in the Temporal UI next to the run.
        phase = ", ".join(self.timeline.running) or self.timeline.current()
        workflow.set_current_details(f"{self.action} {self.runbook.name}: {phase}; DNS {format_weights(self.traffic.held)}")

    # ------------------------------------------------------------------ notifications
    def notify(self, event: str, text: str) -> None:
        """Tell the runbook's notifiers (0.2.0); delivered beside the procedure, never in its way."""
        notifiers = [n for n in self.runbook.spec.notifications if event in n.events] if self.v2 else []
        if not notifiers:
            return
        payload = c.RunEvent(
            event=event, run_id=workflow.info().workflow_id, runbook=self.runbook.name, action=self.action,
            at=workflow.now(), text=text, trigger=self.trigger, requested_by=self.requested_by,
        )
        self._deliveries += [asyncio.ensure_future(self._deliver(n, payload)) for n in notifiers]

    async def _deliver(self, notifier: Any, event: c.RunEvent) -> None:
        try:
            await calls.start_notify(notifier, event)
        except Exception as exc:  # noqa: BLE001 - recorded in the run, never fatal
            self._undelivered.append(f"{event.event}: {explain(exc)}")

    async def _collect_notifications(self) -> None:
        if not self._deliveries:
            return
        await asyncio.gather(*self._deliveries)
        for line in self._undelivered:
            self.timeline.say(f"notification not delivered ({line})")
        assert self._result is not None
        self._result = self._result.model_copy(update={"messages": list(self.timeline.messages)})

    # ------------------------------------------------------------------ gates
    def gated(self) -> None:
        """A gate just judged the regions: DNS may move without checking them again."""
        self.waited = False

    async def gate(self, phase: str, regions: list[str], *, rounds: int | None = None) -> list[c.HealthResult]:
        """Health-gate `regions` in parallel, each verdict noted in `phase`. `rounds=1` is one
        short check (right before a DNS move, or of a rollback's destination); the full gate
        (the runbook's consecutive passes) is what lets DNS move without checking again."""
        results = await together(*(calls.health_gate(self.runbook, r, self.speed, rounds=rounds) for r in regions))
        for r in results:
            verdict = "passed" if r.passed else "FAILED"
            self.timeline.note(phase, f"{r.region} {verdict} after {r.rounds} round(s)", region_evidence(r.region, r.evidence))
        if rounds is None:
            self.gated()
        return results

    async def fresh_check(self, phase: str, regions: list[str]) -> None:
        """Right before DNS moves after a wait: the destination must still be healthy."""
        results = await self.gate(phase, regions, rounds=1)
        failing = [r for r in results if not r.passed]
        if failing:
            raise PhaseFailed(
                f"{', '.join(r.region for r in failing)} failed a fresh health check right before the DNS "
                "change (the run waited since its gate); DNS not changed",
                evidence=[e for r in failing for e in region_evidence(r.region, r.evidence)],
            )
        self.gated()

    def check_rpo(self, phase: str, problems: list[str]) -> None:
        """The DR side older than objectives.rpo: fail before any change, or warn (rpo_policy)."""
        if not problems:
            return
        objectives = self.runbook.spec.objectives
        text = f"older than the RPO {objectives.rpo.total_seconds():g}s: {'; '.join(problems)}"
        if objectives.rpo_policy == "warn":
            self.timeline.note(phase, f"WARNING {text} (objectives.rpo_policy: warn)")
            self.timeline.say(f"warning: {text}")
            return
        raise PhaseFailed(f"{text}; nothing was changed (set objectives.rpo_policy: warn to go on regardless)")

    async def restart_pods(self, phase: str, region: str) -> None:
        info = workflow.info()
        restarted = await calls.rollout_restart(
            self.runbook, region, f"{info.workflow_id}/{info.run_id}/artifacts", self.speed
        )
        shown = ", ".join(restarted.restarted) or "already restarted"
        self.timeline.note(phase, f"{region}: rollout restart after the artifacts were repaired ({shown})")

    async def approval_gate(self) -> None:
        action = self.action
        if not self._approval_required:
            why = f"approvals.{action} is {self._approval_policy.value} (trigger {self.trigger})"
            if self.rehearsal:
                why = "a rehearsal drill against the sandbox needs no approval"
            self.timeline.skip("approval", why)
            return
        approvals = self.runbook.spec.approvals
        timeout = approvals.timeout.total_seconds() / self.speed
        async with self.phase("approval"):
            if self._approved_by is None:
                self.timeline.say(f"waiting up to {timeout:g}s for `drpilot approve {workflow.info().workflow_id}`")
                self.waited = True
                self.notify(
                    "approval_needed",
                    f"{self.action} of {self.runbook.name} waits for approval (up to {timeout:g}s): "
                    f"drpilot approve {workflow.info().workflow_id}",
                )
            self._waiting_for = "approval"
            try:
                await workflow.wait_condition(
                    lambda: self._approved_by is not None, timeout=timeout, timeout_summary="approval timeout"
                )
            except TimeoutError:
                if approvals.on_timeout == "proceed":
                    self.timeline.note("approval", f"no answer within {timeout:g}s: proceeding (approvals.on_timeout)")
                    self.timeline.say("approval timed out; proceeding as the runbook says")
                    return
                self._abort = AbortInput(by="approval timeout", reason=f"no approval within {timeout:g}s")
                raise Aborted(f"no approval within {timeout:g}s (approvals.on_timeout: abort)") from None
            finally:
                self._waiting_for = None
            self.timeline.note("approval", f"approved by {self._approved_by}")

    async def sleep(self, seconds: float, *, kind: str, unscaled: float, summary: str) -> None:
        """A wait of the procedure (a DNS TTL, a bake) of `unscaled` seconds at speed 1 and
        `seconds` at this run's speed; counted at its speed-1 length by the projection."""
        if self.v3 and self.speed != 1 and seconds < calls.SHORT_WAIT_SECONDS:
            if seconds > 0:
                await calls.rehearsal_wait(seconds, summary)
        else:
            await workflow.sleep(seconds, summary=summary)
        projection.timer(kind, seconds, unscaled)

    async def hold_if_paused(self) -> None:
        if not self._paused:
            return
        self._waiting_for = "resume"
        self.waited = True
        self.timeline.say("paused; `drpilot resume` continues")
        try:
            await workflow.wait_condition(lambda: not self._paused)
        finally:
            self._waiting_for = None

    async def hold_for(self, what: WaitingFor) -> str:
        """Hold until an operator resumes (or aborts, which cancels the wait); who resumed."""
        self._hold = what
        self._waiting_for = what
        self.waited = True
        try:
            await workflow.wait_condition(lambda: self._hold is None)
        finally:
            self._hold = None
            self._waiting_for = None
        return self._resumed_by

    # ------------------------------------------------------------------ the run
    async def execute(self, steps: Callable[[], Awaitable[None]]) -> RunResult:
        """Run the steps; on abort or failure compensate; then the result."""
        self.v2 = workflow.patched(SAFETY)
        self.v3 = workflow.patched(REHEARSAL_WAITS)
        who = f" {self.requested_by}" if self.requested_by else ""
        why = f": {self.reason}" if self.reason else ""
        self.notify("started", f"{self.action} of {self.runbook.name} started by {self.trigger}{who}{why}")
        status: Status = "completed"
        if self._abort is None:
            self._path = projection.start()  # before the task, which copies the context
            self._steps = asyncio.create_task(steps())
            try:
                await self._steps
            except (Exception, asyncio.CancelledError) as exc:
                if self._abort is None and is_cancelled_exception(exc):
                    self._abort = AbortInput(by="temporal", reason="cancellation requested through Temporal")
                if self._abort is not None or isinstance(exc, Aborted):
                    status = "aborted"
                    self.timeline.say(f"aborted: {self._abort_text()}")
                else:
                    status = exc.status if isinstance(exc, PhaseFailed) else "failed"
                    self.timeline.say(f"{status}: {explain(exc)}")
        else:
            status = "aborted"
        self._finishing = True
        if status != "completed":
            try:
                await self._shielded(self.traffic.settle())
            except (Exception, asyncio.CancelledError) as exc:
                status = "failed"
                if isinstance(exc, NoHealthyDestination):
                    self.timeline.say(f"compensation: {exc}")
                else:
                    self.timeline.say(
                        f"could NOT return DNS to {format_weights(self.traffic.last_good or {})}: {explain(exc)}; "
                        "set the weights by hand"
                    )
        final = await self._shielded(self.read_world())
        self._result = self.result(status, final)
        # Aborted is told as failed: the run did not do what it was started for.
        event = {"completed": "completed", "rolled_back": "rolled_back"}.get(status, "failed")
        last = self.timeline.messages[-1] if self.timeline.messages else ""
        self.notify(event, f"{self.action} of {self.runbook.name} {status}: {last}")
        await self._shielded(self._collect_notifications())
        metrics.record_result(self._result)  # no command: safe for every release's histories
        workflow.set_current_details(f"{self.action} {self.runbook.name}: {status}")
        if self.v2:
            workflow.upsert_search_attributes([OUTCOME.value_set(status)])
            await self._release(status)
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self._result

    async def _shielded(self, work: Awaitable[T]) -> T:
        """Finish `work` even if Temporal cancels the run meanwhile (0.2.0): compensation
        cut half-way would leave DNS mid-shift."""
        if not self.v2:
            return await asyncio.ensure_future(work)  # as 0.1.0 did: its histories replay so
        return await settled(
            work, lambda: self.timeline.say("cancellation requested while finishing: compensation goes on first")
        )

    async def _release(self, status: Status) -> None:
        """Tell admission (workflows/admission.py) this run no longer holds its runbook."""
        info = workflow.info()
        try:
            await workflow.get_external_workflow_handle(admission.workflow_id(info.task_queue)).signal(
                admission.RELEASE, ReleaseInput(run_id=info.workflow_id, status=status, ended_at=workflow.now())
            )
        except Exception as exc:  # noqa: BLE001 - not started through admission (tests, drills' children)
            workflow.logger.info("admission release not delivered: %s", exc)

    async def read_world(self) -> WorldState:
        """DNS and replicas as the providers report them; unreachable regions are listed."""
        regions = list(self.runbook.regions)
        reads = await asyncio.gather(
            calls.dns_read(self.runbook),
            *(calls.kube_read(self.runbook, r, attempts=1) for r in regions),
            return_exceptions=True,
        )
        dns, replicas = reads[0], reads[1:]
        state: dict[str, Any] = {"replicas": {}, "ready": {}, "unreachable": []}
        if isinstance(dns, c.DnsState):
            state["dns"] = dns.weights()
        else:
            state["dns"] = dict(self.traffic.held)
            self.timeline.say(f"could not read DNS ({explain(dns)}); showing the last weights applied")
        for region, read in zip(regions, replicas, strict=True):
            if isinstance(read, c.ReplicaState):
                state["replicas"][region] = {f"{d.namespace}/{d.name}": d.replicas for d in read.deployments}
                state["ready"][region] = {f"{d.namespace}/{d.name}": d.ready for d in read.deployments}
            else:
                state["unreachable"].append(region)
        return WorldState(**state)

    def result(self, status: Status, final: WorldState) -> RunResult:
        info = workflow.info()
        objective = self.runbook.spec.objectives.rto.total_seconds()
        rto = self.rto_seconds if status == "completed" else None
        if rto is not None and self.action == "failback":
            # A failback is planned and paced by its bakes: the RTO objective is not its yardstick.
            projected = (
                f" at speed {self.speed:g}; projected at speed 1: {self.projection.projected_seconds:.0f}s"
                if self.projection is not None else ""
            )
            self.timeline.say(f"all traffic home after {rto:.1f}s{projected}")
        elif rto is not None:
            # At rehearsal speed the objective is judged on the projection to speed 1.
            unscaled = self._unscaled(rto)
            verdict = "met" if unscaled <= objective else "MISSED"
            if self.projection is not None:
                p = self.projection
                self.timeline.say(
                    f"RTO {rto:.1f}s at speed {self.speed:g}; projected at speed 1: {p.projected_seconds:.0f}s "
                    f"(±{p.uncertainty_seconds:.0f}s) vs objective {objective:.0f}s: {verdict} (projection)"
                )
            else:
                self.timeline.say(f"RTO {rto:.1f}s vs objective {objective:.0f}s: {verdict}")
        return RunResult(
            run_id=info.workflow_id,
            temporal_run_id=info.run_id,
            action=self.action,
            runbook=self.runbook.name,
            status=status,
            phases=list(self.timeline.phases),
            rto_seconds=rto,
            objective_rto_seconds=objective,
            rto_seconds_unscaled=None if rto is None else self._unscaled(rto),
            projection=self.projection if rto is not None else None,
            final_state=final,
            before_state=self._before,
            speed=self.speed,
            started_at=self.started_at,
            ended_at=workflow.now(),
            weights_applied=list(self.traffic.applied),
            dns_changes=list(self.traffic.changes),
            messages=list(self.timeline.messages),
            trigger=self.trigger,
            requested_by=self.requested_by,
            approved_by=self._approved_by,
        )

    def _unscaled(self, rto: float) -> float:
        """The RTO at speed 1: the projection, else (a run without one) the upper bound."""
        return self.projection.projected_seconds if self.projection is not None else rto * self.speed

    def set_step(self, step: str | None) -> None:
        self._step = step

    def mark_recovered(self) -> None:
        self.rto_seconds = (workflow.now() - self.started_at).total_seconds()
        if self._path is not None:
            self.projection = projection.summarise(self._path, self.rto_seconds, self.speed)

    def _abort_text(self) -> str:
        if self._abort is None:
            return "aborted"
        who = f" by {self._abort.by}" if self._abort.by else ""
        return f"aborted{who}" + (f": {self._abort.reason}" if self._abort.reason else "")

    # ------------------------------------------------------------------ operator control
    @workflow.query
    def progress(self) -> Progress:
        info = workflow.info()
        phase = "finished" if self._result is not None and not self.timeline.running else self.timeline.current()
        return Progress(
            run_id=info.workflow_id,
            action=self.action,
            runbook=self.runbook.name,
            state="finished" if self._result is not None else "running",
            status=self._result.status if self._result else None,
            phase=phase,
            step=self._step,
            weights=dict(self.traffic.held),
            target_weights=dict(self.traffic.target),
            waiting_for=self._waiting_for,
            drift=self.traffic.drift,
            approval_required=self._approval_required,
            approved_by=self._approved_by,
            paused=self._paused,
            aborting=self._abort is not None and self._result is None,
            started_at=self.started_at,
            elapsed_seconds=(workflow.now() - self.started_at).total_seconds(),
            speed=self.speed,
            phases=list(self.timeline.phases),
            messages=list(self.timeline.messages),
            result=self._result,
        )

    def _refuse_when_over(self) -> None:
        if self._result is not None:
            raise ValueError(f"the run has finished ({self._result.status})")
        if self._abort is not None:
            raise ValueError(f"the run is being aborted ({self._abort_text()})")
        if self._finishing:
            raise ValueError("the run is finishing")

    @workflow.signal
    def alert_resolved(self, alert: AlertResolved) -> None:
        """Recorded in the timeline; a resolved alert never starts or stops anything."""
        ended = alert.ends_at.strftime("%H:%M:%SZ") if alert.ends_at else "now"
        self.timeline.say(f"alert {alert.name} resolved at {ended} ({alert.fingerprint or 'no fingerprint'}, via {alert.receiver or 'webhook'})")

    @workflow.update
    def approve(self, request: ApproveInput) -> ControlResult:
        self._approved_by = request.by or "unknown"
        comment = f" ({request.comment})" if request.comment else ""
        self.timeline.say(f"approved by {self._approved_by}{comment}")
        return ControlResult(phase=self.timeline.current(), message=f"approved by {self._approved_by}")

    @approve.validator
    def _check_approve(self, request: ApproveInput) -> None:
        self._refuse_when_over()
        if not self._approval_required:
            raise ValueError(
                f"this run needs no approval: approvals.{self.action} is "
                f"{self._approval_policy.value} and the trigger is {self.trigger}"
            )
        if self._approved_by is not None:
            raise ValueError(f"already approved by {self._approved_by}")

    @workflow.update
    async def abort(self, request: AbortInput) -> ControlResult:
        self._abort = request
        self.timeline.say(self._abort_text())
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
        self._refuse_when_over()

    @workflow.update
    def pause(self, request: PauseInput) -> ControlResult:
        self._paused = True
        self.timeline.say(f"pause requested by {request.by or 'unknown'}; holds at the next step boundary")
        return ControlResult(phase=self.timeline.current(), message="paused", weights=dict(self.traffic.held))

    @pause.validator
    def _check_pause(self, request: PauseInput) -> None:
        self._refuse_when_over()
        if self._paused:
            raise ValueError("already paused")

    @workflow.update
    def resume(self, request: PauseInput) -> ControlResult:
        by = request.by or "unknown"
        if self._hold is not None:
            message = f"resumed from the {self._hold} hold"
            self._hold = None
        else:
            message = "resumed"
        self._paused = False
        self._resumed_by = by
        self.timeline.say(f"{message} by {by}")
        return ControlResult(phase=self.timeline.current(), message=message, weights=dict(self.traffic.held))

    @resume.validator
    def _check_resume(self, request: PauseInput) -> None:
        self._refuse_when_over()
        if not self._paused and self._hold is None:
            raise ValueError("not paused and not holding")

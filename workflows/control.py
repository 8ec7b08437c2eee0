"""What every run shares: its timeline, operator control and the safe way to move DNS.

`Run` is the base of FailoverWorkflow and FailbackWorkflow. It owns:
- the phase timeline (`phase()`), the progress query and the result;
- operator control: `approve`, `abort`, `pause`, `resume` (updates with validators);
- `move_dns()`: every DNS change goes through it, so the run always knows the last
  weights that passed a gate (`last_good`) and whether a change batch is in flight;
- compensation (`settle_dns()`), kept apart from the happy path: when a run is aborted or
  fails after changing DNS, DNS goes back to `last_good`. Workloads are never scaled down
  by compensation: during an outage spare capacity is cheap and missing capacity is not.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError, is_cancelled_exception

with workflow.unsafe.imports_passed_through():
    from activities import contracts as c
    from drpilot.runbook import ApprovalPolicy, Runbook
    from workflows import calls
    from workflows.plan import PlanError, approval_required, check_weights, format_weights
    from workflows.types import (
        AbortInput,
        Action,
        ApproveInput,
        ControlResult,
        Outcome,
        PauseInput,
        PhaseRecord,
        Progress,
        RunResult,
        Status,
        Trigger,
        WorldState,
    )


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
    if isinstance(exc, ApplicationError | PhaseFailed | PlanError | Aborted):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


async def together(*branches: Awaitable[Any]) -> list[Any]:
    """Run independent branches in parallel; the first failure cancels the rest (after they
    stop) and is raised, so no activity is left running unobserved."""
    tasks = [asyncio.ensure_future(b) for b in branches]
    try:
        return await asyncio.gather(*tasks)
    except (Exception, asyncio.CancelledError):
        for task in tasks:
            if not task.done():
                task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


def restore_name(action: str, runbook: str) -> str:
    """Velero Restore name: one per run, stable across retries and worker restarts."""
    run = workflow.info().run_id.split("-")[0]
    return f"drpilot-{action}-{runbook}"[:50].rstrip("-") + f"-{run}"


def region_evidence(region: str, evidence: list[c.CheckEvidence]) -> list[c.CheckEvidence]:
    return [e.model_copy(update={"check": f"{region}: {e.check}"}) for e in evidence]


class Run:
    action: Action

    def setup(self, runbook: Runbook, speed: float, trigger: Trigger, policy: ApprovalPolicy) -> None:
        self.runbook = runbook
        self.speed = speed
        self.trigger = trigger
        self._approval_policy = policy
        self._approval_required = approval_required(policy, trigger)
        self._approved_by: str | None = None
        self._phases: list[PhaseRecord] = []
        self._running: list[str] = []
        self._messages: list[str] = []
        self._step: str | None = None
        self._weights: dict[str, int] = {}  # last weights DNS is known to hold
        self._target_weights: dict[str, int] = {}
        self.last_good: dict[str, int] | None = None
        self._changing_dns: Any = None  # the in-flight dns.apply, shielded from abort
        self._recorded_dns: Any = None  # the last dns.apply whose result is recorded
        self._applied: list[dict[str, int]] = []
        self._before: WorldState | None = None
        self._paused = False
        self._waiting_for: str | None = None
        self._abort: AbortInput | None = None
        self._steps: asyncio.Task | None = None
        self._finishing = False
        self._result: RunResult | None = None
        self.rto_seconds: float | None = None

    # ------------------------------------------------------------------ timeline
    @property
    def started_at(self) -> datetime:
        return workflow.info().workflow_start_time

    def say(self, message: str) -> None:
        self._messages.append(message)
        workflow.logger.info(message)

    @asynccontextmanager
    async def phase(self, name: str) -> AsyncIterator[None]:
        self._phases.append(PhaseRecord(name=name, started_at=workflow.now()))
        self._running.append(name)
        self._details()
        workflow.logger.info("phase %s started", name)
        try:
            yield
        except (Exception, asyncio.CancelledError) as exc:
            outcome: Outcome = "aborted" if self._abort or is_cancelled_exception(exc) else "failed"
            if isinstance(exc, PhaseFailed) and exc.status == "rolled_back":
                outcome = "rolled_back"
            if isinstance(exc, Aborted):
                outcome = "aborted"
            evidence = exc.evidence if isinstance(exc, PhaseFailed) else None
            self._close(name, outcome, explain(exc) if outcome != "aborted" else self._abort_text(), evidence)
            self._leave(name)
            raise
        else:
            self._close(name, "ok")
            self._leave(name)
        # Not `finally`: on GeneratorExit (an evicted run being collected) no workflow API
        # may be called.

    def _leave(self, name: str) -> None:
        self._running.remove(name)
        self._details()

    def note(
        self,
        name: str,
        detail: str = "",
        evidence: list[c.CheckEvidence] | None = None,
        outcome: Outcome | None = None,
    ) -> None:
        """Attach detail / evidence (and an outcome other than ok) to the latest phase `name`."""
        i = self._find(name)
        update: dict[str, Any] = {"outcome": outcome} if outcome else {}
        if detail:
            update["detail"] = f"{self._phases[i].detail}; {detail}" if self._phases[i].detail else detail
        if evidence:
            update["evidence"] = [*self._phases[i].evidence, *evidence]
        self._phases[i] = self._phases[i].model_copy(update=update)

    def skip(self, name: str, why: str) -> None:
        now = workflow.now()
        self._phases.append(PhaseRecord(name=name, started_at=now, ended_at=now, outcome="skipped", detail=why))

    def _close(self, name: str, outcome: Outcome, detail: str = "", evidence: list | None = None) -> None:
        i = self._find(name)
        record = self._phases[i]
        if outcome == "ok" and record.outcome != "running":
            outcome = record.outcome  # a phase may have set its own outcome (e.g. rolled_back)
        self._phases[i] = record.model_copy(
            update={
                "ended_at": workflow.now(),
                "outcome": outcome,
                "detail": "; ".join(d for d in (record.detail, detail) if d),
                "evidence": [*record.evidence, *(evidence or [])],
            }
        )
        workflow.logger.info("phase %s %s %s", name, outcome, detail)

    def _find(self, name: str) -> int:
        for i in range(len(self._phases) - 1, -1, -1):
            if self._phases[i].name == name:
                return i
        raise KeyError(name)

    def _details(self) -> None:
        # Shown in the Temporal UI next to the run.
        phase = ", ".join(self._running) or (self._phases[-1].name if self._phases else "starting")
        workflow.set_current_details(
            f"{self.action} {self.runbook.name}: {phase}; DNS {format_weights(self._weights)}"
        )

    # ------------------------------------------------------------------ DNS
    async def move_dns(self, weights: dict[str, int], *, good: bool, phase: str) -> c.DnsApplyResult:
        """Apply `weights` as one change batch, then wait the record TTL.

        `good`: the regions receiving traffic have passed their gate (or, ungraceful, are
        the only place traffic can go), so an abort may return here."""
        check_weights(self.runbook, weights)
        if good:
            self.last_good = dict(weights)
        self._target_weights = dict(weights)
        change = calls.start_dns_apply(self.runbook, weights, self.speed)
        self._changing_dns = change
        # Shielded: an abort must not cancel a change batch half-way; settle_dns() waits
        # for it and then decides.
        result = await asyncio.shield(change)
        self._record_dns(change, result)
        self.note(phase, f"DNS {format_weights(result.weights)} ({result.status})")
        ttl = max(r.ttl for r in self.runbook.spec.dns.records)
        # Resolvers keep the old answer for up to one TTL after the provider applied it.
        await workflow.sleep(ttl / self.speed, summary=f"DNS TTL {ttl}s")
        return result

    def _record_dns(self, change: Any, result: c.DnsApplyResult) -> None:
        """Where a finished change left DNS: the weights now held, and the run's history."""
        self._weights = dict(result.weights)
        self._applied.append(dict(result.weights))
        self._recorded_dns = change

    async def finish_dns_change(self) -> None:
        """Wait for the in-flight (shielded) DNS change, if its result is not recorded yet
        (the awaiting branch was cancelled), and record it; its failure is raised."""
        change = self._changing_dns
        if change is None or change is self._recorded_dns:
            return
        self._record_dns(change, await change)

    async def settle_dns(self) -> None:
        """Compensation: DNS back to the last weights that passed a gate, if this run moved it."""
        if self._changing_dns is None:
            return  # this run never touched DNS
        async with self.phase("compensation"):
            if not self._changing_dns.done():
                try:
                    await self.finish_dns_change()
                except Exception as exc:  # noqa: BLE001 - recorded; DNS is re-read below
                    self.note("compensation", f"in-flight DNS change ended: {explain(exc)}")
            current = (await calls.dns_read(self.runbook)).weights()
            self._weights = current
            if self.last_good is None or current == self.last_good:
                self.note("compensation", f"DNS stays at {format_weights(current)}")
                return
            self._target_weights = dict(self.last_good)
            change = calls.start_dns_apply(self.runbook, self.last_good, self.speed)
            self._changing_dns = change
            result = await change
            self._record_dns(change, result)
            self.note("compensation", f"DNS returned to {format_weights(result.weights)}")

    # ------------------------------------------------------------------ gates
    async def approval_gate(self) -> None:
        action = self.action
        if not self._approval_required:
            self.skip("approval", f"approvals.{action} is {self._approval_policy.value} (trigger {self.trigger})")
            return
        approvals = self.runbook.spec.approvals
        timeout = approvals.timeout.total_seconds() / self.speed
        async with self.phase("approval"):
            if self._approved_by is None:
                self.say(f"waiting up to {timeout:g}s for `drpilot approve {workflow.info().workflow_id}`")
            self._waiting_for = "approval"
            try:
                await workflow.wait_condition(
                    lambda: self._approved_by is not None, timeout=timeout, timeout_summary="approval timeout"
                )
            except TimeoutError:
                if approvals.on_timeout == "proceed":
                    self.note("approval", f"no answer within {timeout:g}s: proceeding (approvals.on_timeout)")
                    self.say("approval timed out; proceeding as the runbook says")
                    return
                self._abort = AbortInput(by="approval timeout", reason=f"no approval within {timeout:g}s")
                raise Aborted(f"no approval within {timeout:g}s (approvals.on_timeout: abort)") from None
            finally:
                self._waiting_for = None
            self.note("approval", f"approved by {self._approved_by}")

    async def hold_if_paused(self) -> None:
        if not self._paused:
            return
        self._waiting_for = "resume"
        self.say("paused; `drpilot resume` continues")
        try:
            await workflow.wait_condition(lambda: not self._paused)
        finally:
            self._waiting_for = None

    # ------------------------------------------------------------------ the run
    async def execute(self, steps: Callable[[], Awaitable[None]]) -> RunResult:
        """Run the steps; on abort or failure compensate; then the result."""
        status: Status = "completed"
        if self._abort is None:
            self._steps = asyncio.create_task(steps())
            try:
                await self._steps
            except (Exception, asyncio.CancelledError) as exc:
                if self._abort is None and is_cancelled_exception(exc):
                    self._abort = AbortInput(by="temporal", reason="cancellation requested through Temporal")
                if self._abort is not None or isinstance(exc, Aborted):
                    status = "aborted"
                    self.say(f"aborted: {self._abort_text()}")
                else:
                    status = exc.status if isinstance(exc, PhaseFailed) else "failed"
                    self.say(f"{status}: {explain(exc)}")
        else:
            status = "aborted"
        self._finishing = True
        if status != "completed":
            try:
                await self.settle_dns()
            except (Exception, asyncio.CancelledError) as exc:
                status = "failed"
                self.say(
                    f"could NOT return DNS to {format_weights(self.last_good or {})}: {explain(exc)}; "
                    "set the weights by hand"
                )
        final = await self.read_world()
        self._result = self.result(status, final)
        workflow.set_current_details(f"{self.action} {self.runbook.name}: {status}")
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self._result

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
            state["dns"] = dict(self._weights)
            self.say(f"could not read DNS ({explain(dns)}); showing the last weights applied")
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
            self.say(f"all traffic home after {rto:.1f}s")
        elif rto is not None:
            # At rehearsal speed the objective is judged on the unscaled equivalent. It is an
            # upper bound: fixed costs (process start, polling) do not shrink with speed.
            verdict = "met" if rto * self.speed <= objective else "MISSED"
            unscaled = f" (at most {rto * self.speed:.0f}s at speed 1)" if self.speed != 1 else ""
            self.say(f"RTO {rto:.1f}s{unscaled} vs objective {objective:.0f}s: {verdict}")
        return RunResult(
            run_id=info.workflow_id,
            temporal_run_id=info.run_id,
            action=self.action,
            runbook=self.runbook.name,
            status=status,
            phases=list(self._phases),
            rto_seconds=rto,
            objective_rto_seconds=objective,
            rto_seconds_unscaled=None if rto is None else rto * self.speed,
            final_state=final,
            before_state=self._before,
            speed=self.speed,
            started_at=self.started_at,
            ended_at=workflow.now(),
            weights_applied=list(self._applied),
            messages=list(self._messages),
        )

    def set_step(self, step: str | None) -> None:
        self._step = step

    def mark_recovered(self) -> None:
        self.rto_seconds = (workflow.now() - self.started_at).total_seconds()

    def _abort_text(self) -> str:
        if self._abort is None:
            return "aborted"
        who = f" by {self._abort.by}" if self._abort.by else ""
        return f"aborted{who}" + (f": {self._abort.reason}" if self._abort.reason else "")

    # ------------------------------------------------------------------ operator control
    @workflow.query
    def progress(self) -> Progress:
        info = workflow.info()
        if self._running:
            phase = self._running[-1]
        elif self._result is not None:
            phase = "finished"
        else:
            phase = self._phases[-1].name if self._phases else "starting"
        return Progress(
            run_id=info.workflow_id,
            action=self.action,
            runbook=self.runbook.name,
            state="finished" if self._result is not None else "running",
            status=self._result.status if self._result else None,
            phase=phase,
            step=self._step,
            weights=dict(self._weights),
            target_weights=dict(self._target_weights),
            waiting_for=self._waiting_for,  # type: ignore[arg-type]
            approval_required=self._approval_required,
            approved_by=self._approved_by,
            paused=self._paused,
            aborting=self._abort is not None and self._result is None,
            started_at=self.started_at,
            elapsed_seconds=(workflow.now() - self.started_at).total_seconds(),
            speed=self.speed,
            phases=list(self._phases),
            messages=list(self._messages),
            result=self._result,
        )

    def _refuse_when_over(self) -> None:
        if self._result is not None:
            raise ValueError(f"the run has finished ({self._result.status})")
        if self._abort is not None:
            raise ValueError(f"the run is being aborted ({self._abort_text()})")
        if self._finishing:
            raise ValueError("the run is finishing")

    @workflow.update
    def approve(self, request: ApproveInput) -> ControlResult:
        self._approved_by = request.by or "unknown"
        comment = f" ({request.comment})" if request.comment else ""
        self.say(f"approved by {self._approved_by}{comment}")
        return ControlResult(phase=self._phase_name(), message=f"approved by {self._approved_by}")

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
        self.say(self._abort_text())
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
        self.say(f"pause requested by {request.by or 'unknown'}; holds at the next step boundary")
        return ControlResult(phase=self._phase_name(), message="paused", weights=dict(self._weights))

    @pause.validator
    def _check_pause(self, request: PauseInput) -> None:
        self._refuse_when_over()
        if self._paused:
            raise ValueError("already paused")

    @workflow.update
    def resume(self, request: PauseInput) -> ControlResult:
        self._paused = False
        self.say(f"resumed by {request.by or 'unknown'}")
        return ControlResult(phase=self._phase_name(), message="resumed", weights=dict(self._weights))

    @resume.validator
    def _check_resume(self, request: PauseInput) -> None:
        self._refuse_when_over()
        if not self._paused:
            raise ValueError("not paused")

    def _phase_name(self) -> str:
        return self._running[-1] if self._running else (self._phases[-1].name if self._phases else "starting")

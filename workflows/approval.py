"""A run's approval (spec.approvals): whether it needs one, the wait for it, who gave it.

The `approve` update and its validator stay on the workflow classes (workflows/control.py)
and delegate here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from drpilot.domain.runbook import ApprovalPolicy
    from workflows.facts import RunFacts
    from workflows.failures import Aborted
    from workflows.notifications import Notifications
    from workflows.operator import Operator
    from workflows.plan import approval_required
    from workflows.timeline import Timeline
    from workflows.types import AbortInput, ApproveInput


# Triggers that mean a person started the run: only then is the starter someone to tell apart.
PEOPLE = ("cli", "console")


@dataclass(eq=False, kw_only=True)
class Approval:
    run: RunFacts
    timeline: Timeline
    operator: Operator
    notifications: Notifications
    approved_by: str | None = field(default=None, init=False)
    pending: str | None = field(default=None, init=False)  # the block approval waiting now (its step)
    confirmed: dict[str, str] = field(default_factory=dict, init=False)  # block approval step -> who gave it

    @property
    def policy(self) -> ApprovalPolicy:
        return getattr(self.run.runbook.spec.approvals, self.run.action)  # approvals.failover or approvals.failback

    @property
    def required(self) -> bool:
        return approval_required(self.policy, self.run.trigger) and not self.run.rehearsal

    async def gate(self) -> None:
        """Wait for `approve` when the runbook asks for it; on timeout proceed or abort."""
        action = self.run.action
        if not self.required:
            why = f"approvals.{action} is {self.policy.value} (trigger {self.run.trigger})"
            if self.run.rehearsal:
                why = "a rehearsal drill against the sandbox needs no approval"
            self.timeline.skip("approval", why)
            return
        async with self.timeline.phase("approval"):
            if await self._wait("approval", lambda: self.approved_by is not None, ask=self.approved_by is None):
                self.timeline.note("approval", f"approved by {self.approved_by}")

    async def confirm(self, step: str, message: str) -> None:
        """A block of kind approval (spec.blocks): a named wait inside the open phase `step`,
        under spec.approvals' timeout, on_timeout and four eyes, whatever the run's own
        approval policy; a rehearsal drill against the sandbox skips it, as it does the run's."""
        if self.run.rehearsal:
            self.timeline.note(step, "a rehearsal drill against the sandbox needs no approval")
            return
        self.pending = step
        self.operator.waiting_cause = message
        try:
            if await self._wait(step, lambda: step in self.confirmed, ask=True, what=f"{step} ({message})"):
                self.timeline.note(step, f"approved by {self.confirmed[step]}")
        finally:
            self.pending = None
            self.operator.waiting_cause = None

    async def _wait(self, phase: str, given: Callable[[], bool], *, ask: bool, what: str = "approval") -> bool:
        """Wait for `given`; whether it was (False: timed out, and on_timeout says proceed)."""
        approvals = self.run.runbook.spec.approvals
        timeout = approvals.timeout.total_seconds() / self.run.speed
        timeline, operator = self.timeline, self.operator
        run_id = workflow.info().workflow_id
        if ask:
            timeline.say(f"waiting up to {timeout:g}s for `drpilot approve {run_id}`" + ("" if what == "approval" else f": {what}"))
            operator.waited = True
            self.notifications.notify(
                "approval_needed",
                f"{self.notifications.subject} waits for {what} (up to {timeout:g}s): drpilot approve {run_id}",
            )
        operator.waiting_for = "approval"
        try:
            # The run's own wait keeps its timer's summary: saved histories replay it.
            summary = "approval timeout" if what == "approval" else f"{phase} approval timeout"
            await workflow.wait_condition(given, timeout=timeout, timeout_summary=summary)
        except TimeoutError:
            if approvals.on_timeout == "proceed":
                timeline.note(phase, f"no answer within {timeout:g}s: proceeding (approvals.on_timeout)")
                timeline.say(f"{what} timed out; proceeding as the runbook says")
                return False
            operator.abort = AbortInput(by="approval timeout", reason=f"no approval within {timeout:g}s")
            raise Aborted(f"no approval within {timeout:g}s (approvals.on_timeout: abort)") from None
        finally:
            operator.waiting_for = None
        return True

    def approve(self, request: ApproveInput) -> str:
        comment = f" ({request.comment})" if request.comment else ""
        if self.pending is not None:  # a block's approval is what the run waits for now
            self.confirmed[self.pending] = request.by or "unknown"
            self.timeline.say(f"{self.pending} approved by {self.confirmed[self.pending]}{comment}")
            return f"{self.pending} approved by {self.confirmed[self.pending]}"
        self.approved_by = request.by or "unknown"
        self.timeline.say(f"approved by {self.approved_by}{comment}")
        return f"approved by {self.approved_by}"

    @property
    def four_eyes(self) -> bool:
        """Whether the identity that started the run may not approve it: a person started it
        (the CLI, the console) and approvals.distinct_approver holds."""
        return (
            self.run.runbook.spec.approvals.distinct_approver
            and self.run.trigger in PEOPLE
            and bool(self.run.requested_by)
        )

    def refuse_approve(self, request: ApproveInput) -> None:
        """The validator's checks. A refused update leaves no event in the history and
        validators do not run on replay, so this changes no run's commands."""
        if self.pending is None and not self.required:
            raise ValueError(
                f"this run needs no approval: approvals.{self.run.action} is "
                f"{self.policy.value} and the trigger is {self.run.trigger}"
            )
        if self.pending is None and self.approved_by is not None:
            raise ValueError(f"already approved by {self.approved_by}")
        if self.four_eyes and request.by in ("", self.run.requested_by):
            # An approval naming nobody cannot be told apart from the starter.
            whom = "another person must approve it" if request.by else "an approval must name who gives it"
            raise ValueError(f"four eyes: {self.run.requested_by} started this run, so {whom} (approvals.distinct_approver)")

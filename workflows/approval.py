"""A run's approval (spec.approvals): whether it needs one, the wait for it, who gave it.

The `approve` update and its validator stay on the workflow classes (workflows/control.py)
and delegate here.
"""

from __future__ import annotations

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
        approvals = self.run.runbook.spec.approvals
        timeout = approvals.timeout.total_seconds() / self.run.speed
        timeline, operator = self.timeline, self.operator
        async with timeline.phase("approval"):
            if self.approved_by is None:
                timeline.say(f"waiting up to {timeout:g}s for `drpilot approve {workflow.info().workflow_id}`")
                operator.waited = True
                self.notifications.notify(
                    "approval_needed",
                    f"{self.notifications.subject} waits for approval (up to {timeout:g}s): "
                    f"drpilot approve {workflow.info().workflow_id}",
                )
            operator.waiting_for = "approval"
            try:
                await workflow.wait_condition(
                    lambda: self.approved_by is not None, timeout=timeout, timeout_summary="approval timeout"
                )
            except TimeoutError:
                if approvals.on_timeout == "proceed":
                    timeline.note("approval", f"no answer within {timeout:g}s: proceeding (approvals.on_timeout)")
                    timeline.say("approval timed out; proceeding as the runbook says")
                    return
                operator.abort = AbortInput(by="approval timeout", reason=f"no approval within {timeout:g}s")
                raise Aborted(f"no approval within {timeout:g}s (approvals.on_timeout: abort)") from None
            finally:
                operator.waiting_for = None
            timeline.note("approval", f"approved by {self.approved_by}")

    def approve(self, request: ApproveInput) -> str:
        self.approved_by = request.by or "unknown"
        comment = f" ({request.comment})" if request.comment else ""
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
        if not self.required:
            raise ValueError(
                f"this run needs no approval: approvals.{self.run.action} is "
                f"{self.policy.value} and the trigger is {self.run.trigger}"
            )
        if self.approved_by is not None:
            raise ValueError(f"already approved by {self.approved_by}")
        if self.four_eyes and request.by in ("", self.run.requested_by):
            # An approval naming nobody cannot be told apart from the starter.
            whom = "another person must approve it" if request.by else "an approval must name who gives it"
            raise ValueError(f"four eyes: {self.run.requested_by} started this run, so {whom} (approvals.distinct_approver)")

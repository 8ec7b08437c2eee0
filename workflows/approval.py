"""A run's approval (spec.approvals): whether it needs one, the wait for it, who gave it.

The `approve` update and its validator stay on the workflow classes (workflows/control.py)
and delegate here.
"""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from drpilot.domain.runbook import ApprovalPolicy, Runbook
    from workflows.failures import Aborted
    from workflows.notifications import Notifications
    from workflows.operator import Operator
    from workflows.plan import approval_required
    from workflows.timeline import Timeline
    from workflows.types import AbortInput, Action, ApproveInput, Trigger


class Approval:
    def __init__(
        self, runbook: Runbook, action: Action, trigger: Trigger, policy: ApprovalPolicy, *, rehearsal: bool,
        speed: float, timeline: Timeline, operator: Operator, notifications: Notifications,
    ) -> None:
        self.runbook = runbook
        self.action = action
        self.trigger = trigger
        self.policy = policy
        self.rehearsal = rehearsal  # a rehearsal drill against the sandbox: nobody to approve
        self.required = approval_required(policy, trigger) and not rehearsal
        self.approved_by: str | None = None
        self._speed = speed
        self._timeline = timeline
        self._operator = operator
        self._notifications = notifications

    async def gate(self) -> None:
        """Wait for `approve` when the runbook asks for it; on timeout proceed or abort."""
        action = self.action
        if not self.required:
            why = f"approvals.{action} is {self.policy.value} (trigger {self.trigger})"
            if self.rehearsal:
                why = "a rehearsal drill against the sandbox needs no approval"
            self._timeline.skip("approval", why)
            return
        approvals = self.runbook.spec.approvals
        timeout = approvals.timeout.total_seconds() / self._speed
        timeline, operator = self._timeline, self._operator
        async with timeline.phase("approval"):
            if self.approved_by is None:
                timeline.say(f"waiting up to {timeout:g}s for `drpilot approve {workflow.info().workflow_id}`")
                operator.waited = True
                self._notifications.notify(
                    "approval_needed",
                    f"{self._notifications.subject} waits for approval (up to {timeout:g}s): "
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
        self._timeline.say(f"approved by {self.approved_by}{comment}")
        return f"approved by {self.approved_by}"

    def refuse_approve(self) -> None:
        if not self.required:
            raise ValueError(
                f"this run needs no approval: approvals.{self.action} is "
                f"{self.policy.value} and the trigger is {self.trigger}"
            )
        if self.approved_by is not None:
            raise ValueError(f"already approved by {self.approved_by}")

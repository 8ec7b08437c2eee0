"""Holding a run while Route53's control plane does not answer (0.4.0).

A failback is planned work: its shift steps move weights through ChangeResourceRecordSets,
which Route53 serves from us-east-1 only. When that does not answer, failing the run would
leave it to a human to start it again; the step holds instead (`waiting_for: route53
control plane`, with the provider's words), polls the control plane with a read-only check
every POLL_SECONDS (divided by the rehearsal speed), and goes on when it answers. An abort
ends the hold like any other; what DNS answers meanwhile is left as it was.
"""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from workflows import calls
    from workflows.facts import RunFacts
    from workflows.notifications import Notifications
    from workflows.operator import Operator
    from workflows.pace import Pace
    from workflows.timeline import Timeline

# How often a held step asks whether the control plane answers again, at speed 1.
POLL_SECONDS = 30.0
WAITING_FOR = "route53 control plane"


async def wait_for_control_plane(
    run: RunFacts, pace: Pace, timeline: Timeline, operator: Operator, notifications: Notifications,
    phase: str, cause: str,
) -> None:
    message = (
        f"Route53's control plane does not answer ({cause}); holding until it does, then this step goes on; "
        f"`drpilot abort {workflow.info().workflow_id}` leaves DNS as it is"
    )
    timeline.note(phase, message)
    timeline.say(message)
    notifications.notify("held", f"{notifications.subject} holds: {message}")
    operator.waiting_for, operator.waiting_cause = WAITING_FOR, cause
    operator.waited = True
    try:
        while True:
            await pace.sleep(POLL_SECONDS / pace.speed, kind="hold", unscaled=POLL_SECONDS,
                             summary="wait for Route53's control plane")
            state = await calls.dns_read(run.runbook, control_plane=True)
            if not state.control_plane_down:
                break
            operator.waiting_cause = state.control_plane_down
    finally:
        operator.waiting_for = operator.waiting_cause = None
    timeline.note(phase, "Route53's control plane answers again; going on")

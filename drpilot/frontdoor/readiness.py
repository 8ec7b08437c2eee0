"""Readiness from the front door: run the read-only checks now, or every N minutes on a
Temporal Schedule (`readiness:NAME`, a firing skipped while the last still runs); and the
schedule's previous verdict a scheduled check asks for through the `readiness.previous`
activity (activities/front_door.py): reading it needs a Temporal client, which only the front
door and the worker have."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
)
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.service import RPCError, RPCStatusCode

from activities.contracts import ReadinessResult
from activities.front_door import NoSchedule
from drpilot.domain.runbook import Runbook
from drpilot.domain.settings import Settings
from drpilot.frontdoor.runs import RunError
from drpilot.frontdoor.schedules import put_schedule
from workflows.readiness import ReadinessWorkflow
from workflows.types import RUNBOOK, ReadinessInput

PREFIX = "readiness:"


def schedule_id(runbook: str) -> str:
    return f"{PREFIX}{runbook}"


async def check_now(client: Client, settings: Settings, rb: Runbook) -> ReadinessResult:
    try:
        return await client.execute_workflow(
            ReadinessWorkflow.run, ReadinessInput(runbook=rb), id=f"{PREFIX}{rb.name}-{datetime.now(UTC):%Y-%m-%dT%H:%M:%S.%fZ}",
            task_queue=settings.temporal.task_queue, result_type=ReadinessResult,
            search_attributes=TypedSearchAttributes([SearchAttributePair(RUNBOOK, rb.name)]),
            execution_timeout=timedelta(hours=1),
        )
    except RPCError as exc:
        raise RunError(f"cannot check readiness of {rb.name}: {exc.message}") from None


async def schedule(client: Client, settings: Settings, rb: Runbook, every: timedelta) -> str:
    """Create or update the runbook's readiness schedule; "created" or "updated"."""
    plan = Schedule(
        action=ScheduleActionStartWorkflow(
            ReadinessWorkflow.run, ReadinessInput(runbook=rb, notify_changes=True), id=schedule_id(rb.name),
            task_queue=settings.temporal.task_queue, execution_timeout=timedelta(hours=1),
            typed_search_attributes=TypedSearchAttributes([SearchAttributePair(RUNBOOK, rb.name)]),
        ),
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=every)]),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP, catchup_window=timedelta(minutes=1)),
    )
    return await put_schedule(client, schedule_id(rb.name), plan)


async def latest(client: Client, name: str, *, before: str = "") -> ReadinessResult | None:
    """The result of the schedule's last finished firing (other than the run id `before`), or None."""
    handle = client.get_schedule_handle(schedule_id(name))
    try:
        recent = (await handle.describe()).info.recent_actions
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise RunError(f"no readiness schedule {schedule_id(name)}") from None
        raise RunError(f"schedule {schedule_id(name)}: {exc.message}") from None
    for action in reversed(recent):
        if action.action.first_execution_run_id == before:
            continue
        run = client.get_workflow_handle(action.action.workflow_id, run_id=action.action.first_execution_run_id)
        if (await run.describe()).close_time is None:
            continue  # still running
        raw = await run.result()
        return raw if isinstance(raw, ReadinessResult) else ReadinessResult.model_validate(raw)
    return None


async def delete(client: Client, name: str) -> None:
    try:
        await client.get_schedule_handle(schedule_id(name)).delete()
    except RPCError as exc:
        raise RunError(f"schedule {schedule_id(name)}: {exc.message}") from None


class ReadinessHistory:
    """What answers a scheduled check's question (the `readiness.previous` activity): the
    verdict it compares itself with."""

    def __init__(self, client: Client):
        self.client = client

    async def previous(self, runbook: str, before: str) -> ReadinessResult | None:
        try:
            return await latest(self.client, runbook, before=before)
        except RunError as exc:
            if str(exc).startswith("no readiness schedule"):
                raise NoSchedule(str(exc)) from None
            raise

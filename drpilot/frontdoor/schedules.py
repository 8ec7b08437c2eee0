"""Drills on a Temporal Schedule: one schedule per runbook, `drill:RUNBOOK`.

Chosen policies, the ones a game day wants:
- overlap SKIP: a drill still running (a slow live failback) makes the next firing a no-op,
  never a second drill queued behind it;
- pause on failure: a drill that failed or was aborted ends as a Temporal failure
  (workflows/drill.py), which pauses the schedule with a note until someone looks and
  `drpilot drill resume`s it. A *blocked* drill (a blocking alert, the runbook held) is not
  a failure: the next firing tries again;
- no catch-up: a firing missed while Temporal was down is not made up hours later, when
  nobody expects it (catchup window of one minute);
- blackout windows: calendar ranges (e.g. 12-15..01-05, every year) the schedule skips.

The schedule carries the runbook as it was when scheduled (the drill's input): after
changing the runbook, run `drpilot drill schedule` again (it updates the schedule in place).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleCalendarSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleRange,
    ScheduleSpec,
    ScheduleState,
    ScheduleUpdate,
    ScheduleUpdateInput,
)
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.service import RPCError, RPCStatusCode

from drpilot.domain.settings import Settings
from drpilot.frontdoor.drills import DRILL_ID_PREFIX
from drpilot.frontdoor.runs import RunError
from workflows.drill import DrillWorkflow
from workflows.types import RUNBOOK, DrillInput

DAYS_IN_MONTH = {1: 31, 2: 29, 3: 31, 4: 30, 5: 31, 6: 30, 7: 31, 8: 31, 9: 30, 10: 31, 11: 30, 12: 31}
BLACKOUT = re.compile(r"(\d{2})-(\d{2})\.\.(\d{2})-(\d{2})")


class ScheduleError(ValueError):
    """A schedule option drpilot cannot use; the text names it and the fix."""


def schedule_id(runbook: str) -> str:
    """Also the prefix of its drills' ids: Temporal appends the firing time (drill:RUNBOOK-2026-...)."""
    return f"{DRILL_ID_PREFIX}{runbook}"


def blackout_calendars(window: str) -> list[ScheduleCalendarSpec]:
    """`MM-DD..MM-DD` (inclusive, every year, may wrap the new year) as calendar specs to skip,
    one per month it touches, every second of each day."""
    found = BLACKOUT.fullmatch(window.strip())
    if not found:
        raise ScheduleError(f"--blackout {window!r}: expected MM-DD..MM-DD, e.g. 12-15..01-05")
    m1, d1, m2, d2 = (int(x) for x in found.groups())
    for month, day in ((m1, d1), (m2, d2)):
        if month not in DAYS_IN_MONTH or not 1 <= day <= DAYS_IN_MONTH[month]:
            raise ScheduleError(f"--blackout {window!r}: {month:02d}-{day:02d} is not a date")
    months = [m1]
    while months[-1] != m2:
        months.append(months[-1] % 12 + 1)
    if len(months) == 1 and d2 < d1:  # 03-20..03-10: all year but a gap
        raise ScheduleError(f"--blackout {window!r}: the end is before the start")
    whole_day = {"second": (ScheduleRange(0, 59),), "minute": (ScheduleRange(0, 59),), "hour": (ScheduleRange(0, 23),)}
    calendars = []
    for i, month in enumerate(months):
        first = d1 if i == 0 else 1
        last = d2 if i == len(months) - 1 else DAYS_IN_MONTH[month]
        calendars.append(ScheduleCalendarSpec(
            **whole_day, day_of_month=(ScheduleRange(first, last),), month=(ScheduleRange(month),),
            comment=f"blackout {window}",
        ))
    return calendars


def drill_schedule(settings: Settings, request: DrillInput, cron: str, blackouts: list[str], time_zone: str) -> Schedule:
    name = request.runbook.name
    # requested_by stays who created the schedule; the evidence says which schedule fired.
    request = request.model_copy(update={"scheduled_by": schedule_id(name)})
    return Schedule(
        action=ScheduleActionStartWorkflow(
            DrillWorkflow.run, request, id=schedule_id(name), task_queue=settings.temporal.task_queue,
            typed_search_attributes=TypedSearchAttributes([SearchAttributePair(RUNBOOK, name)]),
        ),
        spec=ScheduleSpec(
            cron_expressions=[cron], skip=[c for w in blackouts for c in blackout_calendars(w)], time_zone_name=time_zone,
        ),
        policy=SchedulePolicy(
            overlap=ScheduleOverlapPolicy.SKIP, pause_on_failure=True, catchup_window=timedelta(minutes=1),
        ),
        state=ScheduleState(note=f"drills of {name} ({request.mode}) from {request.from_region}"),
    )


async def create_or_update(
    client: Client, settings: Settings, request: DrillInput, cron: str, blackouts: list[str], time_zone: str = "UTC"
) -> str:
    """Create the runbook's drill schedule, or update it in place; "created" or "updated"."""
    schedule = drill_schedule(settings, request, cron, blackouts, time_zone)
    return await put_schedule(client, schedule_id(request.runbook.name), schedule)


async def put_schedule(client: Client, sid: str, schedule: Schedule) -> str:
    """Create schedule `sid`, or replace what it does in place; "created" or "updated"."""
    try:
        await client.create_schedule(sid, schedule)
        return "created"
    except ScheduleAlreadyRunningError:
        pass
    except RPCError as exc:
        raise RunError(f"cannot create schedule {sid}: {_invalid(exc)}") from None

    def replace(_: ScheduleUpdateInput) -> ScheduleUpdate:
        return ScheduleUpdate(schedule=schedule)

    try:
        await client.get_schedule_handle(sid).update(replace)
    except RPCError as exc:
        raise RunError(f"cannot update schedule {sid}: {_invalid(exc)}") from None
    return "updated"


def _invalid(exc: RPCError) -> str:
    # Temporal's own words name the bad cron field, e.g. "invalid range" / "invalid time zone".
    return exc.message


@dataclass(frozen=True)
class Listed:
    schedule_id: str
    paused: bool
    note: str
    cron: list[str]
    next_runs: list[datetime]
    last_run: datetime | None


# Each cron field's whole range: written as `*`.
_CRON_FIELDS = (("minute", 0, 59), ("hour", 0, 23), ("day_of_month", 1, 31), ("month", 1, 12), ("day_of_week", 0, 6))


def as_cron(calendar: ScheduleCalendarSpec) -> str:
    """A calendar as the cron expression it came from: the server keeps a schedule's cron
    expressions as calendars, and describe() returns those."""

    def field(ranges, low: int, high: int) -> str:
        parts = []
        for r in ranges:
            end = max(r.end, r.start)  # Temporal: an end below the start means the start alone
            if (r.start, end, r.step) == (low, high, 1):
                parts.append("*")
            else:
                parts.append(str(r.start) if end == r.start else f"{r.start}-{end}" + (f"/{r.step}" if r.step > 1 else ""))
        return ",".join(parts) or "*"

    return " ".join(field(getattr(calendar, name), low, high) for name, low, high in _CRON_FIELDS)


async def list_drill_schedules(client: Client) -> list[Listed]:
    found = []
    try:
        async for s in await client.list_schedules():
            if not s.id.startswith(DRILL_ID_PREFIX):
                continue
            try:
                d = await client.get_schedule_handle(s.id).describe()
            except RPCError as exc:
                if exc.status == RPCStatusCode.NOT_FOUND:
                    continue  # deleted since the list was read (visibility follows a delete)
                raise
            recent = d.info.recent_actions
            found.append(Listed(
                schedule_id=s.id, paused=d.schedule.state.paused, note=d.schedule.state.note or "",
                cron=list(d.schedule.spec.cron_expressions) or [as_cron(c) for c in d.schedule.spec.calendars],
                next_runs=list(d.info.next_action_times[:3]),
                last_run=recent[-1].scheduled_at if recent else None,
            ))
    except RPCError as exc:
        raise RunError(f"cannot list schedules: {exc.message}") from None
    return sorted(found, key=lambda x: x.schedule_id)


async def control(client: Client, name: str, request: str, note: str) -> str:
    """pause, resume, delete or trigger the drill schedule of runbook `name`; what was done."""
    sid = name if name.startswith(DRILL_ID_PREFIX) else schedule_id(name)
    handle = client.get_schedule_handle(sid)
    try:
        if request == "pause":
            await handle.pause(note=note)
        elif request == "resume":
            await handle.unpause(note=note)
        elif request == "delete":
            await handle.delete()
        elif request == "trigger":
            await handle.trigger()
        else:
            raise ValueError(request)
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise RunError(f"no drill schedule {sid}: see `drpilot drill list`") from None
        raise RunError(f"schedule {sid}: {exc.message}") from None
    done = {"pause": "paused", "resume": "resumed", "delete": "deleted", "trigger": "triggered"}[request]
    return f"{sid}: {done} at {datetime.now(UTC):%Y-%m-%d %H:%M:%SZ}"

"""What a run did, read back from its Temporal history: the request that started it, its
result, every activity and timer with when it ran and what it answered, and what operators
and alerts sent it.

The history is the record a run already keeps (README "Production deployment": retained as
the evidence of every failover), so a report needs no extra command in any workflow and
works for runs of every release. Anything that does not decode (a field renamed between
releases) is left out of the report rather than failing it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ValidationError
from temporalio.api.common.v1 import Payload, Payloads
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter

from activities import contracts as c
from workflows.types import (
    AbortInput,
    AlertResolved,
    ApproveInput,
    FailbackInput,
    FailoverInput,
    PauseInput,
    PhaseRecord,
    RunResult,
)

# activity name -> (input type, result type): how its payloads decode.
CONTRACTS: dict[str, tuple[type[BaseModel], type[BaseModel]]] = {
    c.DNS_READ: (c.DnsReadInput, c.DnsState),
    c.DNS_APPLY: (c.DnsApplyInput, c.DnsApplyResult),
    c.KUBE_READ: (c.KubeReadInput, c.ReplicaState),
    c.KUBE_SCALE: (c.ScaleInput, c.ScaleResult),
    c.KUBE_ROLLOUT_RESTART: (c.RolloutRestartInput, c.RolloutRestartResult),
    c.ARTIFACTS_VERIFY: (c.ArtifactInput, c.VerifyResult),
    c.ARTIFACTS_RESTORE: (c.RestoreInput, c.RestoreResult),
    c.ARTIFACTS_SYNC: (c.SyncInput, c.SyncResult),
    c.VELERO_RESTORE: (c.VeleroRestoreInput, c.VeleroRestoreResult),
    c.VELERO_BACKUP: (c.VeleroBackupInput, c.VeleroBackupInfo),
    c.PROBES_WARMUP: (c.WarmupInput, c.WarmupResult),
    c.PROBES_HEALTH: (c.HealthInput, c.HealthResult),
    c.PROBES_ANALYSE: (c.AnalyseInput, c.AnalyseResult),
    c.NOTIFY_SEND: (c.NotifyInput, c.NotifyResult),
}
REQUESTS: dict[str, type[BaseModel]] = {
    "approve": ApproveInput, "abort": AbortInput, "pause": PauseInput, "resume": PauseInput,
}
WORKFLOW_INPUTS: dict[str, type[BaseModel]] = {"FailoverWorkflow": FailoverInput, "FailbackWorkflow": FailbackInput}


class NotARun(ValueError):
    """The history is not of a drpilot failover or failback run."""


@dataclass
class Step:
    """One activity (all its attempts) or one wait of the run: a durable timer, or a
    rehearsal's short wait slept by the worker (shown as the timer it stands for)."""

    name: str  # activity name (dns.apply) or the timer's summary (bake at 50%)
    kind: str  # activity | timer
    started: datetime  # scheduled (activity) or started (timer)
    ended: datetime | None = None
    outcome: str = "running"  # ok | failed | cancelled | timed out | running
    attempts: int = 1
    error: str = ""
    request: Any = None  # the decoded input, when it decodes
    answer: Any = None  # the decoded result, when it decodes
    phase: str = ""  # the phase it ran in (set once the phases are known)

    @property
    def seconds(self) -> float | None:
        return None if self.ended is None else (self.ended - self.started).total_seconds()

    @property
    def region(self) -> str:
        request = self.request
        if isinstance(request, c.SyncInput):
            return request.target_region
        return getattr(request, "region", "") or ""


@dataclass(frozen=True)
class OperatorRequest:
    """An update (approve, abort, pause, resume) or signal (alert_resolved) the run received."""

    name: str
    at: datetime
    by: str = ""
    text: str = ""


@dataclass
class RunFacts:
    workflow_id: str
    temporal_run_id: str
    workflow_type: str
    started_at: datetime
    request: FailoverInput | FailbackInput
    result: RunResult | None  # None while the run has not ended with a result
    closed_at: datetime | None = None
    closed: str = ""  # how Temporal closed it: completed, failed, terminated, ...
    steps: list[Step] = field(default_factory=list)
    requests: list[OperatorRequest] = field(default_factory=list)
    # A running run's phases so far, from its progress query (the console): the history holds
    # them only in the result, at the end.
    live_phases: list[PhaseRecord] = field(default_factory=list)

    @property
    def phases(self) -> list[PhaseRecord]:
        return list(self.result.phases) if self.result else list(self.live_phases)

    @property
    def speed(self) -> float:
        return self.request.speed

    @property
    def action(self) -> str:
        return "failover" if isinstance(self.request, FailoverInput) else "failback"

    def activities(self, name: str) -> list[Step]:
        return [s for s in self.steps if s.kind == "activity" and s.name == name and s.answer is not None]


def _at(event: HistoryEvent) -> datetime:
    return event.event_time.ToDatetime(tzinfo=UTC)


def _decode(payloads: Payloads | None, kind: type[BaseModel] | None) -> Any:
    if payloads is None or not payloads.payloads or kind is None:
        return None
    try:
        return pydantic_data_converter.payload_converter.from_payloads(payloads.payloads, [kind])[0]
    except (ValidationError, ValueError, TypeError, RuntimeError):
        return None


def _text(payload: Payload) -> str:
    if not payload.data:
        return ""
    try:
        value = pydantic_data_converter.payload_converter.from_payload(payload, str)
    except (ValueError, TypeError, RuntimeError):
        return ""
    return value if isinstance(value, str) else ""


def rehearsal_wait(event: HistoryEvent, by_id: dict[int, HistoryEvent]) -> Step | None:
    """A rehearsal's short wait (activities/rehearsal.py), recorded as a local-activity marker:
    shown as the timer it stands for. It ran inside the workflow task before the marker, so
    it is placed from that task's start to the marker, both in the server's time (the SDK's
    own timestamps in the marker mix the worker's clock with the server's)."""
    marker = event.marker_recorded_event_attributes
    data = marker.details.get("data")
    if marker.marker_name != "core_local_activity" or data is None or not data.payloads:
        return None
    try:  # the SDK's own record of the local activity (JSON)
        record = pydantic_data_converter.payload_converter.from_payload(data.payloads[0], dict)
    except (ValueError, TypeError, RuntimeError):
        return None
    if not isinstance(record, dict) or record.get("activity_type") != c.REHEARSAL_WAIT:
        return None
    started = _at(event)
    for earlier in range(event.event_id - 1, 0, -1):  # the workflow task it ran in
        task = by_id.get(earlier)
        if task is not None and task.HasField("workflow_task_started_event_attributes"):
            started = _at(task)
            break
    summary = _text(event.user_metadata.summary) if event.HasField("user_metadata") else ""
    return Step(name=summary or "wait", kind="timer", started=started, ended=_at(event), outcome="ok")


def read(history: WorkflowHistory, live_phases: list[PhaseRecord] | None = None) -> RunFacts:
    """The facts of one run from its history (and, while it runs, the phases its progress
    reports); NotARun for any other workflow's history."""
    events = list(history.events)
    if not events or not events[0].HasField("workflow_execution_started_event_attributes"):
        raise NotARun(f"{history.workflow_id}: the history does not start with a workflow start")
    begun = events[0].workflow_execution_started_event_attributes
    kind = begun.workflow_type.name
    if kind not in WORKFLOW_INPUTS:
        raise NotARun(f"{history.workflow_id} is a {kind}, not a drpilot failover or failback run")
    request = _decode(begun.input, WORKFLOW_INPUTS[kind])
    if request is None:
        raise NotARun(f"{history.workflow_id}: its start input does not decode as a {kind} request")
    facts = RunFacts(
        workflow_id=history.workflow_id, temporal_run_id=begun.original_execution_run_id,
        workflow_type=kind, started_at=_at(events[0]), request=request, result=None, live_phases=live_phases or [],
    )
    activities: dict[int, Step] = {}
    timers: dict[int, Step] = {}
    by_id = {event.event_id: event for event in events}
    for event in events:
        which = event.WhichOneof("attributes")
        if which == "activity_task_scheduled_event_attributes":
            a = event.activity_task_scheduled_event_attributes
            types = CONTRACTS.get(a.activity_type.name)
            step = Step(name=a.activity_type.name, kind="activity", started=_at(event),
                        request=_decode(a.input, types[0] if types else None))
            activities[event.event_id] = step
            facts.steps.append(step)
        elif which == "activity_task_started_event_attributes":
            a = event.activity_task_started_event_attributes
            if a.scheduled_event_id in activities:
                activities[a.scheduled_event_id].attempts = a.attempt or 1
        elif which == "activity_task_completed_event_attributes":
            a = event.activity_task_completed_event_attributes
            if step := activities.get(a.scheduled_event_id):
                types = CONTRACTS.get(step.name)
                step.ended, step.outcome = _at(event), "ok"
                step.answer = _decode(a.result, types[1] if types else None)
        elif which == "activity_task_failed_event_attributes":
            a = event.activity_task_failed_event_attributes
            if step := activities.get(a.scheduled_event_id):
                step.ended, step.outcome, step.error = _at(event), "failed", a.failure.message
        elif which == "activity_task_timed_out_event_attributes":
            a = event.activity_task_timed_out_event_attributes
            if step := activities.get(a.scheduled_event_id):
                step.ended, step.outcome, step.error = _at(event), "timed out", a.failure.message
        elif which == "activity_task_canceled_event_attributes":
            a = event.activity_task_canceled_event_attributes
            if step := activities.get(a.scheduled_event_id):
                step.ended, step.outcome = _at(event), "cancelled"
        elif which == "timer_started_event_attributes":
            summary = _text(event.user_metadata.summary) if event.HasField("user_metadata") else ""
            step = Step(name=summary or "timer", kind="timer", started=_at(event))
            timers[event.event_id] = step
            facts.steps.append(step)
        elif which == "marker_recorded_event_attributes":
            if step := rehearsal_wait(event, by_id):
                facts.steps.append(step)
        elif which == "timer_fired_event_attributes":
            if step := timers.get(event.timer_fired_event_attributes.started_event_id):
                step.ended, step.outcome = _at(event), "ok"
        elif which == "timer_canceled_event_attributes":
            if step := timers.get(event.timer_canceled_event_attributes.started_event_id):
                step.ended, step.outcome = _at(event), "cancelled"
        elif which == "workflow_execution_update_accepted_event_attributes":
            accepted = event.workflow_execution_update_accepted_event_attributes.accepted_request.input
            asked = _decode(accepted.args, REQUESTS.get(accepted.name))
            facts.requests.append(OperatorRequest(
                name=accepted.name, at=_at(event), by=getattr(asked, "by", "") or "",
                text=getattr(asked, "comment", "") or getattr(asked, "reason", "") or "",
            ))
        elif which == "workflow_execution_signaled_event_attributes":
            signal = event.workflow_execution_signaled_event_attributes
            alert = _decode(signal.input, AlertResolved) if signal.signal_name == "alert_resolved" else None
            facts.requests.append(OperatorRequest(
                name=signal.signal_name, at=_at(event), by=alert.receiver if alert else signal.identity,
                text=alert.name if alert else "",
            ))
        elif which == "workflow_execution_completed_event_attributes":
            facts.result = _decode(event.workflow_execution_completed_event_attributes.result, RunResult)
            facts.closed_at, facts.closed = _at(event), "completed"
        elif which is not None and which.startswith("workflow_execution_") and which != "workflow_execution_started_event_attributes":
            closing = which.removeprefix("workflow_execution_").removesuffix("_event_attributes")
            if closing in ("failed", "timed_out", "terminated", "canceled", "continued_as_new"):
                facts.closed_at, facts.closed = _at(event), closing.replace("_", " ")
    _assign_phases(facts)
    return facts


# Phases that run beside another one from the same instant (failback's restore and
# sync-artifacts): the activities each of them runs, so a step is put under its own.
PHASE_OF = {c.ARTIFACTS_SYNC: "sync-artifacts"}
# The activities only blocks run (workflows/blocks.py): under their block's phase (`block:NAME`),
# which runs beside the serving tier's prepare; the serving tier's activities never under one.
BLOCK_ACTIVITIES = frozenset({
    c.BLOCK_HTTP, c.BLOCKS_AURORA_SWITCH, c.BLOCKS_JOB_RUN,
})


def _assign_phases(facts: RunFacts) -> None:
    """Each step belongs to the innermost phase open when it began: the latest-started phase
    whose span holds the step's start (phases nest: the shift's steps inside failback)."""
    phases = facts.phases
    for step in facts.steps:
        holding = [
            p for p in phases
            if p.started_at <= step.started and (p.ended_at is None or step.started <= p.ended_at)
        ]
        own = [p for p in holding if p.name == PHASE_OF.get(step.name)]
        if not own:
            block = step.name in BLOCK_ACTIVITIES
            own = [p for p in holding if p.name.startswith("block:") == block]
        if own or holding:
            step.phase = max(own or holding, key=lambda p: p.started_at).name

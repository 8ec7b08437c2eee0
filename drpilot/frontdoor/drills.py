"""Drills from the front door: starting one now, answering the claim every drill makes at
admission, its result, and its history read back from the evidence packs in S3 or Cloud Storage.

The claim is an activity (activities/front_door.py), but answering it needs what only a front
door has: a Temporal client and drpilot's admission code (drpilot/frontdoor/runs.py). The
worker hands `DrillAdmission.admit`, with its own client, to the registry
(drpilot/frontdoor/worker.py).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime

from temporalio.client import Client, WorkflowFailureError, WorkflowHandle
from temporalio.common import SearchAttributePair, TypedSearchAttributes, WorkflowIDConflictPolicy
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError

from activities.artifacts.objects import Location, ObjectStore
from activities.contracts import Admission, Claim, ColdStart, ErrorType
from activities.front_door import AdmissionUnavailable
from drpilot.domain.runbook import Runbook
from drpilot.domain.settings import Settings
from drpilot.frontdoor import runs
from workflows.drill import DrillWorkflow
from workflows.types import RUNBOOK, DrillInput, DrillResult

DRILL_ID_PREFIX = "drill:"
DRILL_MODES = ("rehearsal", "live")


class DrillRefused(ValueError):
    """A drill that cannot start as asked: one line saying what to change."""


def drill_id(runbook: str, at: datetime) -> str:
    """drill:RUNBOOK-2026-12-05T10:00:00Z: the shape a Temporal Schedule gives its runs too."""
    return f"{DRILL_ID_PREFIX}{runbook}-{at.astimezone(UTC):%Y-%m-%dT%H:%M:%SZ}"


class DrillAdmission:
    """What answers a drill's claim (the `drill.claim` activity): admission, as every front
    door claims a runbook."""

    def __init__(self, client: Client, settings: Settings):
        self.client = client
        self.settings = settings

    async def admit(self, claim: Claim) -> Admission:
        try:
            return await runs.admit(self.client, self.settings, claim)
        except runs.RunError as exc:
            raise AdmissionUnavailable(str(exc)) from None


def drill_input(rb: Runbook, settings: Settings, *, from_region: str | None, mode: str, speed: float,
                requested_by: str, mode_option: str = "mode") -> DrillInput:
    """What `drpilot drill run` and the console's start drill both start, or DrillRefused: the
    runbook must say where evidence goes, and a rehearsal needs the sandbox's environment.
    `mode_option` is how the caller names the mode to the person (the CLI: --mode)."""
    if mode not in DRILL_MODES:
        raise DrillRefused(f"{mode_option}: expected rehearsal or live, got {mode!r}")
    if rb.spec.drills is None:
        raise DrillRefused(
            "spec.drills is missing: add drills.evidence (an s3:// or gs://bucket/prefix/) so each drill's "
            'evidence is kept (README, "Drills")'
        )
    region = from_region or rb.primary
    if region not in rb.regions:
        raise DrillRefused(f"unknown region {region!r}; {rb.name} has {', '.join(rb.regions)}")
    if mode == "rehearsal" and not settings.sandbox:
        raise DrillRefused(
            "a rehearsal drill runs against a sandbox twin, and DRPILOT_SANDBOX is not set: `source DIR/env` of "
            f"`drpilot sandbox up` first, or pass {mode_option} live for the real environment"
        )
    return DrillInput(runbook=rb, from_region=region, mode=mode, speed=speed if mode == "rehearsal" else 1.0,
                      requested_by=requested_by)


async def start_drill(client: Client, settings: Settings, request: DrillInput) -> WorkflowHandle:
    """Start a drill now; it claims the runbook itself, first thing (workflows/drill.py)."""
    try:
        return await client.start_workflow(
            DrillWorkflow.run, request, id=drill_id(request.runbook.name, datetime.now(UTC)),
            task_queue=settings.temporal.task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
            search_attributes=TypedSearchAttributes([SearchAttributePair(RUNBOOK, request.runbook.name)]),
        )
    except RPCError as exc:
        raise runs.RunError(f"cannot start a drill of {request.runbook.name}: {exc.message}") from None


async def drill_result(handle: WorkflowHandle) -> DrillResult:
    """The drill's result; a failed or aborted drill ends as a Temporal failure carrying it."""
    try:
        raw = await handle.result()
    except WorkflowFailureError as exc:
        cause = exc.cause
        details = getattr(cause, "details", None) or ()
        if isinstance(cause, ApplicationError) and cause.type == ErrorType.DRILL_FAILED and details:
            raw = details[0]
        else:
            raise runs.RunError(f"drill {handle.id} ended without a result: {getattr(cause, 'message', None) or exc}") from None
    except RPCError as exc:
        raise runs.RunError(f"drill {handle.id}: {exc.message}") from None
    return raw if isinstance(raw, DrillResult) else DrillResult.model_validate(raw)


async def drill_progress(handle: WorkflowHandle) -> DrillResult:
    try:
        return await handle.query(DrillWorkflow.drill, result_type=DrillResult)
    except RPCError as exc:
        raise runs.RunError(f"drill {handle.id}: {exc.message}") from None


# ------------------------------------------------------------------------------ history
class HistoryError(RuntimeError):
    """The evidence cannot be read; the text says where and why."""


@dataclass(frozen=True)
class Past:
    key: str
    result: DrillResult


def read_history(rb: Runbook, stores: ObjectStore, limit: int = 20) -> list[Past]:
    """The runbook's past drills from their evidence packs in S3 or Cloud Storage, oldest
    first (the last `limit`)."""
    if rb.spec.drills is None:
        raise HistoryError(f"{rb.name} has no spec.drills.evidence: drills write their evidence there")
    evidence = Location.parse(rb.spec.drills.evidence)
    where = Location(evidence.bucket, f"{evidence.prefix}{rb.name}/", evidence.scheme)
    try:
        paths = sorted(p for p in stores.listed(where) if p.endswith(".json"))
        found = []
        for path in paths[-limit:]:
            body = stores.read(where, path)
            try:
                found.append(Past(key=where.key(path), result=DrillResult.model_validate(json.loads(body))))
            except ValueError as exc:
                raise HistoryError(f"{where.uri(path)} is not a drill evidence pack: {str(exc).splitlines()[0]}") from None
    except ApplicationError as exc:  # the store's: no such bucket, no credentials, endpoint down
        raise HistoryError(f"cannot read {where.uri()}: {exc.message}") from None
    return found


def trend(past: list[Past]) -> str:
    """One line: how the measured RTO (unscaled) moves against the objective across drills."""
    measured = [p.result for p in past if p.result.rto_seconds_unscaled is not None]
    if not measured:
        return "no drill measured an RTO yet"
    objective = measured[-1].objective_rto_seconds
    values = [r.rto_seconds_unscaled or 0.0 for r in measured]
    last = values[-1]
    missed = sum(1 for v in values if v > objective)
    line = f"RTO last {last:.0f}s vs objective {objective:.0f}s ({last / objective:.0%} of it); {missed} of {len(values)} missed"
    return line + _direction(values)


def _direction(values: list[float]) -> str:
    """"; worse than the mean 60s of the 2 before" (or better, steady); "" for one value."""
    if len(values) < 2:
        return ""
    last, earlier = values[-1], sum(values[:-1]) / (len(values) - 1)
    direction = "worse than" if last > earlier * 1.1 else "better than" if last < earlier * 0.9 else "steady around"
    return f"; {direction} the mean {earlier:.0f}s of the {len(values) - 1} before"


def cold_start_trend(past: list[Past]) -> list[str]:
    """One line per cold-start stage: across the drills whose failover measured it, the
    slowest workload's seconds from the scale request, at speed 1 (ColdStart.unscaled), e.g. "cold start ready: 61s, 58s, 240s (last 240s; worse than the mean 60s of the 2 before)"."""
    lines = []
    for stage in ColdStart.STAGES:
        values = []
        for p in past:
            run = p.result.failover
            seen = [s for c in (run.cold_starts if run else []) if (s := c.unscaled(stage, run.speed)) is not None]
            if seen:
                values.append(max(seen))
        if values:
            name = ColdStart.NAMES.get(stage, stage)
            shown = ", ".join(f"{v:.0f}s" for v in values[-6:])
            lines.append(f"cold start {name}: {shown} at speed 1 (last {values[-1]:.0f}s{_direction(values)})")
    return lines

"""Starting, watching and steering runs from the front door (CLI, webhook, drills).

Every start claims its runbook at admission first (workflows/admission.py): while any run
of the runbook, or of another runbook moving the same DNS records, is active, a start is
refused with one line saying which run holds it, who started it, since when and how to
abort it. Asking again for the very same run attaches to it instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import random
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar

from temporalio.client import (
    Client,
    WithStartWorkflowOperation,
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowHandle,
    WorkflowHistory,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import CancelledError, TerminatedError, TimeoutError
from temporalio.service import RPCError, RPCStatusCode

from activities.contracts import Admission, Admissions, Claim, Claims, GuardedClaims
from drpilot.domain.settings import Settings
from drpilot.frontdoor.temporal import rpc_problem
from workflows import admission
from workflows.admission import AdmissionWorkflow
from workflows.types import (
    OUTCOME,
    RUNBOOK,
    WORKFLOW_NAMES,
    AbortInput,
    AdmissionState,
    ApproveInput,
    ControlResult,
    FailbackInput,
    FailoverInput,
    PauseInput,
    Progress,
    RunResult,
    StaleInput,
    workflow_id,
)

T = TypeVar("T")

# How long a front door waits for a worker to answer admission before saying there is none.
ADMISSION_TIMEOUT = 30.0


class RunError(RuntimeError):
    """An operator request the run refused, or a run that does not exist; one sentence."""


class RunRefused(RunError):
    """Admission refused the start: another run holds the runbook or its DNS records."""

    def __init__(self, message: str, admission: Admission):
        super().__init__(message)
        self.admission = admission


@dataclass(frozen=True)
class Started:
    handle: WorkflowHandle
    attached: bool  # the same request was already running: this is that run


def operator() -> str:
    """The CLI's identity: the OS account this process runs as, from its real uid (not $USER
    or $LOGNAME, which any shell sets at will); "uid:N" where the account has no name (a
    container's arbitrary uid). It is what the machine proves, no more: whoever reaches
    Temporal can send any name, so Temporal's namespace permissions stay the access control."""
    uid = os.getuid()
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid:{uid}"


def claim_for(request: FailoverInput | FailbackInput) -> Claim:
    rb = request.runbook
    dns = rb.spec.dns
    records = [f"{dns.provider.value}/{dns.zone}/{r.name}" for r in dns.records]
    if isinstance(request, FailoverInput):
        action = "failover"
        asked = {
            "from": request.failed_region,
            "to": ",".join(request.target_regions or []) or "default",
            "strategy": request.strategy,
        }
    else:
        action = "failback"
        asked = {"to": request.original_region}
    asked["speed"] = f"{request.speed:g}"
    return Claim(
        run_id=workflow_id(action, rb.name), action=action, runbook=rb.name, dns_records=records,
        request=asked, trigger=request.trigger, requested_by=request.requested_by, reason=request.reason,
    )


async def start(client: Client, settings: Settings, request: FailoverInput | FailbackInput) -> Started:
    """Claim the runbook at admission, then start its run (or attach to the same one)."""
    claim = claim_for(request)
    return await begin(client, settings, claim, request, await admit(client, settings, claim))


# Runs one front door starts at once after a batch admission: each start is one RPC.
STARTS_IN_FLIGHT = 64
# Claims per admission update: a claim is a few hundred bytes, far below the payload limit.
CLAIMS_PER_UPDATE = 250


async def start_many(
    client: Client, settings: Settings, requests: list[FailoverInput | FailbackInput]
) -> list[Started | RunError]:
    """Start many runs at once (an evacuation): their claims admitted in one update, each
    with the guarantees of `start` (one run per runbook and per DNS record; the same request
    attaches); then the runs started side by side. Per request, in order: Started, or the
    RunError (RunRefused) that one got."""
    claims = [claim_for(r) for r in requests]
    return await begin_many(client, settings, claims, requests, await admit_many(client, settings, claims))


async def admit_many(client: Client, settings: Settings, claims: list[Claim]) -> list[Admission]:
    """Many claims judged at admission in one update per CLAIMS_PER_UPDATE (each in order, as
    if alone): one answer per claim, in order."""
    answers: list[Admission] = []
    for first in range(0, len(claims), CLAIMS_PER_UPDATE):
        batch = Claims(claims=claims[first : first + CLAIMS_PER_UPDATE])
        answers += (await _admission(client, settings, AdmissionWorkflow.claim_many, batch, Admissions,
                                     f"{len(batch.claims)} runbooks")).answers
    return answers


async def begin_many(
    client: Client, settings: Settings, claims: list[Claim], requests: list[FailoverInput | FailbackInput],
    answers: list[Admission],
) -> list[Started | RunError]:
    """What admission answered each claim, acted on side by side (STARTS_IN_FLIGHT at once)."""
    gate = asyncio.Semaphore(STARTS_IN_FLIGHT)

    async def one(claim: Claim, request: FailoverInput | FailbackInput, answer: Admission) -> Started | RunError:
        async with gate:
            try:
                if not answer.admitted and not answer.attach and await dropped_if_stale(client, settings, answer):
                    answer = await admit(client, settings, claim)  # a holder that was over: once more alone
                return await begin(client, settings, claim, request, answer)
            except RunError as exc:
                return exc

    return list(await asyncio.gather(*(one(c, r, a) for c, r, a in zip(claims, requests, answers, strict=True))))


async def claim_guarded(client: Client, settings: Settings, claims: GuardedClaims) -> list[Admission]:
    """Alerts' claims in one admission update, each with the breaker and cooldown admission
    holds (AdmissionWorkflow.claim_guarded): one answer per claim, in order."""
    what = f"{len(claims.claims)} alert claim(s)"
    return (await _admission(client, settings, AdmissionWorkflow.claim_guarded, claims, Admissions, what)).answers


async def begin(
    client: Client, settings: Settings, claim: Claim, request: FailoverInput | FailbackInput, answer: Admission
) -> Started:
    """What admission answered, acted on: start the admitted run, attach, or refuse."""
    if answer.admitted:
        handle = await client.start_workflow(
            WORKFLOW_NAMES[claim.action],
            request,
            id=claim.run_id,
            task_queue=settings.temporal.task_queue,
            # A run of this id still open (its claim was dropped as stale) is this one.
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            # A finished run's id may be used again: the next incident is a new run.
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
            search_attributes=TypedSearchAttributes([SearchAttributePair(RUNBOOK, claim.runbook)]),
            result_type=RunResult,
        )
        return Started(handle=handle, attached=False)
    if answer.attach:
        return Started(handle=client.get_workflow_handle(claim.run_id, result_type=RunResult), attached=True)
    raise RunRefused(refusal(claim, answer), answer)


async def admit(client: Client, settings: Settings, claim: Claim) -> Admission:
    """Claim at admission; a holder whose run is over is dropped and the claim tried again.
    The answer: admitted, attach (the same request holds it), or refused with the holder."""
    for _ in range(3):  # a stale claim dropped is followed by one more try
        answer = await _claim(client, settings, claim)
        if answer.admitted:
            return answer
        assert answer.holder is not None
        if await dropped_if_stale(client, settings, answer):
            continue
        return answer
    raise RunError(f"admission for {claim.runbook} kept changing under three tries; try again")


def refusal(claim: Claim, answer: Admission) -> str:
    assert answer.holder is not None
    held = answer.holder.claim
    who = f"{held.trigger}{' ' + held.requested_by if held.requested_by else ''}"
    since = answer.holder.since.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    what = ", ".join(f"{k} {v}" for k, v in held.request.items())
    if answer.differences:
        return (
            f"refused: {held.run_id} is already running with a different request "
            f"({'; '.join(answer.differences)}), started by {who} at {since}; "
            f"abort it first with `drpilot abort {held.run_id}`"
        )
    return (
        f"refused: {claim.action} of {claim.runbook} cannot start while {held.run_id} ({what}) holds "
        f"{answer.conflict}, started by {who} at {since}; abort it with `drpilot abort {held.run_id}` "
        "or wait for it to end"
    )


async def _claim(client: Client, settings: Settings, claim: Claim) -> Admission:
    return await _admission(client, settings, AdmissionWorkflow.claim, claim, Admission, claim.runbook)


async def _admission(client: Client, settings: Settings, update, argument, result_type: type[T], what: str) -> T:
    """An update of the task queue's AdmissionWorkflow (started if need be), sent again
    while Temporal turns it away unapplied, within ADMISSION_TIMEOUT."""
    queue = settings.temporal.task_queue
    turned_away: list[RPCError] = []

    async def in_turn() -> T:
        delay = 0.05
        while True:
            operation = WithStartWorkflowOperation(  # one per call: the SDK refuses a reused one
                AdmissionWorkflow.run,
                AdmissionState(),
                id=admission.workflow_id(queue),
                task_queue=queue,
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            )
            try:
                async with _in_flight():
                    return await client.execute_update_with_start_workflow(
                        update, argument, start_workflow_operation=operation, result_type=result_type
                    )
            except RPCError as exc:
                if not _not_applied(exc):
                    raise
                turned_away.append(exc)
            await asyncio.sleep(random.uniform(delay / 2, delay))
            delay = min(delay * 2, 1.0)

    try:
        return await asyncio.wait_for(in_turn(), ADMISSION_TIMEOUT)
    except (TimeoutError, WorkflowUpdateRPCTimeoutOrCancelledError):
        # wait_for's cancellation can surface as the SDK's own error for a cancelled update.
        if turned_away:
            raise RunError(
                f"admission for {what}: Temporal kept turning the claim away for "
                f"{ADMISSION_TIMEOUT:g}s ({_rpc(turned_away[-1])}); try again"
            ) from None
        raise RunError(
            f"no drpilot worker answered on task queue {queue} within {ADMISSION_TIMEOUT:g}s: "
            "start one with `drpilot worker` (same DRPILOT_TEMPORAL_* and DRPILOT_TASK_QUEUE)"
        ) from None
    except RPCError as exc:
        raise RunError(f"admission for {what}: {_rpc(exc)}") from None


# Claims this process has in flight at once: below Temporal's 10 in-flight updates per
# workflow, so one process's own claims (the webhook's alert storm, an evacuation) queue here
# instead of being turned away and sent again, which starves the workflow's own tasks.
CLAIMS_IN_FLIGHT = 8
_gates: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = weakref.WeakKeyDictionary()


def _in_flight() -> asyncio.Semaphore:
    loop = asyncio.get_running_loop()
    gate = _gates.get(loop)
    if gate is None:
        gate = _gates[loop] = asyncio.Semaphore(CLAIMS_IN_FLIGHT)
    return gate


def _not_applied(exc: RPCError) -> bool:
    """A claim Temporal turned away before the AdmissionWorkflow saw it, to be sent again: the
    server allows 10 in-flight updates per workflow execution and answers the rest
    ResourceExhausted, and aborts updates it admitted but never delivered to the workflow
    (Unavailable, "workflow update was aborted": on continue-as-new, and seen under a burst
    of claims). `claim` is a synchronous handler, so a delivered update is also completed: an
    aborted one changed nothing. Many runbooks failing over at once (a region loss pages every
    runbook homed there) meet both; the SDK's own retries give up after a few."""
    if exc.status == RPCStatusCode.RESOURCE_EXHAUSTED:
        return True
    return exc.status == RPCStatusCode.UNAVAILABLE and "update was aborted" in exc.message


async def dropped_if_stale(client: Client, settings: Settings, answer: Admission) -> bool:
    """The holder's run is over (terminated, or its start never happened): drop its claim."""
    assert answer.holder is not None
    holder = answer.holder
    try:
        description = await client.get_workflow_handle(holder.claim.run_id).describe()
        over = description.status != WorkflowExecutionStatus.RUNNING
    except RPCError as exc:
        if exc.status != RPCStatusCode.NOT_FOUND:
            raise RunError(f"cannot check run {holder.claim.run_id}: {_rpc(exc)}") from None
        over = datetime.now(UTC) - holder.since > admission.UNSTARTED_GRACE
    if not over:
        return False
    handle = client.get_workflow_handle(admission.workflow_id(settings.temporal.task_queue))
    stale = StaleInput(run_id=holder.claim.run_id, since=holder.since)
    await handle.execute_update(AdmissionWorkflow.release_stale, stale)
    return True


async def progress(handle: WorkflowHandle) -> Progress:
    try:
        return await handle.query("progress", result_type=Progress)
    except RPCError as exc:
        raise RunError(f"run {handle.id}: {_rpc(exc)}") from None


def _rpc(exc: RPCError) -> str:
    # A workflow that does not exist, or a query no worker answered: Temporal's own words.
    if exc.status.name in ("PERMISSION_DENIED", "UNAUTHENTICATED") or "amespace" in exc.message:
        return rpc_problem(exc)
    return exc.message


def _ended(run_id: str, cause: BaseException | None) -> str:
    """Why a run ended without a result of its own: drpilot's runs end with a RunResult
    (completed, failed, rolled_back, aborted), so these came from outside the run."""
    aftermath = (
        "no compensation ran, so DNS and replicas are as the run left them: check them with "
        "`drpilot runbook plan`, then start a new run"
    )
    if isinstance(cause, TerminatedError):
        reason = "" if cause.message in ("", "Workflow terminated") else f" ({cause.message})"
        return f"run {run_id} was terminated in Temporal{reason}; {aftermath}"
    if isinstance(cause, CancelledError):
        return f"run {run_id} was cancelled in Temporal; {aftermath}"
    if isinstance(cause, TimeoutError):
        return f"run {run_id} hit its Temporal execution timeout; {aftermath}"
    message = getattr(cause, "message", None) or str(cause or "") or "no reason given"
    return f"run {run_id} failed in Temporal: {message}; {aftermath}"


async def result(handle: WorkflowHandle) -> RunResult:
    try:
        raw = await handle.result()
    except WorkflowFailureError as exc:
        raise RunError(_ended(handle.id, exc.cause)) from None
    except RPCError as exc:
        raise RunError(f"run {handle.id}: {_rpc(exc)}") from None
    # A handle from start_workflow(result_type=...) decodes it; one from an id gives a dict.
    return raw if isinstance(raw, RunResult) else RunResult.model_validate(raw)


async def history(client: Client, run_id: str, temporal_run_id: str | None = None) -> WorkflowHistory:
    """The run's Temporal history (its latest execution unless `temporal_run_id` names one):
    what a report is read from."""
    try:
        return await client.get_workflow_handle(run_id, run_id=temporal_run_id).fetch_history()
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            which = f" (Temporal run {temporal_run_id})" if temporal_run_id else ""
            raise RunError(
                f"no run {run_id}{which} in namespace {client.namespace}: see `drpilot status` for the runs there"
            ) from None
        raise RunError(f"run {run_id}: {_rpc(exc)}") from None


async def watch(handle: WorkflowHandle, on_progress: Callable[[Progress], None], every: float = 0.5) -> RunResult:
    """Call on_progress with each new progress until the run ends, and once more with the
    finished run's (its last phases and messages, which the last poll may have missed);
    return its result."""
    done = asyncio.ensure_future(result(handle))
    try:
        while not done.done():
            with contextlib.suppress(RunError):  # no worker has picked the run up yet
                on_progress(await progress(handle))
            await asyncio.wait([done], timeout=every)
        ended = done.result()
        # A closed run's query needs a worker to replay it: shown if one answers soon, else
        # skipped. Only a display: no failure of it may stand between the caller and the result.
        with contextlib.suppress(Exception):
            on_progress(await asyncio.wait_for(progress(handle), 5 * every))
        return ended
    finally:
        done.cancel()


async def control(client: Client, run_id: str, request: str, by: str | None = None, reason: str = "operator abort") -> ControlResult:
    """Send an operator request (approve, abort, pause, resume) as `by` (default: the CLI's
    identity, operator()); `reason` is an abort's."""
    handle = client.get_workflow_handle(run_id)
    by = operator() if by is None else by
    argument = {
        "approve": ApproveInput(by=by),
        "abort": AbortInput(by=by, reason=reason),
        "pause": PauseInput(by=by),
        "resume": PauseInput(by=by),
    }[request]
    try:
        return await handle.execute_update(request, argument, result_type=ControlResult)
    except RPCError as exc:
        raise RunError(f"run {run_id}: {_rpc(exc)}") from None
    except Exception as exc:  # WorkflowUpdateFailedError: the validator's reason
        cause = getattr(exc, "cause", None)
        raise RunError(f"run {run_id} refused {request}: {getattr(cause, 'message', None) or exc}") from None


@dataclass(frozen=True)
class Listed:
    run_id: str
    runbook: str
    state: str  # running, or Temporal's close status: completed, failed, terminated, ...
    outcome: str  # drpilot's own: completed, failed, rolled_back, aborted; "" while running
    started_at: datetime | None


async def latest_runs(
    client: Client, limit: int = 20, *, runbook: str | None = None, outcome: str | None = None
) -> list[Listed]:
    """Recent drpilot runs, newest first, optionally only one runbook's or one outcome's."""
    # Drills too: they set the same runbook and outcome attributes (workflows/drill.py).
    kinds = " OR ".join(f"WorkflowType = '{name}'" for name in [*WORKFLOW_NAMES.values(), "DrillWorkflow"])
    query = f"({kinds})"
    if runbook:
        query += f" AND {RUNBOOK.name} = '{_quoted(runbook)}'"
    if outcome:
        query += f" AND {OUTCOME.name} = '{_quoted(outcome)}'"
    found = []
    try:
        async for execution in client.list_workflows(query, limit=limit):
            attributes = execution.typed_search_attributes
            state = execution.status.name.lower() if execution.status else "unknown"
            # A run ended by `temporal workflow terminate` never set its own outcome.
            found.append(
                Listed(
                    run_id=execution.id,
                    runbook=attributes.get(RUNBOOK) or "",
                    state=state,
                    outcome=attributes.get(OUTCOME) or ("" if state == "running" else state),
                    started_at=execution.start_time,
                )
            )
    except RPCError as exc:
        raise RunError(f"cannot list runs: {_rpc(exc)}") from None
    return found


def _quoted(value: str) -> str:
    return value.replace("\\", "\\\\").replace("'", "\\'")

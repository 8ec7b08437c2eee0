"""Starting, watching and steering runs from the front door (CLI today, webhook later).

One active run per (runbook, action): the workflow id comes from them and a second start
attaches to the first (conflict policy USE_EXISTING) instead of starting another.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
from collections.abc import Callable

from temporalio.client import Client, WorkflowFailureError, WorkflowHandle
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import CancelledError, TerminatedError, TimeoutError
from temporalio.service import RPCError

from drpilot.settings import Settings
from drpilot.temporal import rpc_problem
from workflows.types import (
    WORKFLOW_NAMES,
    AbortInput,
    ApproveInput,
    ControlResult,
    FailbackInput,
    FailoverInput,
    PauseInput,
    Progress,
    RunResult,
    workflow_id,
)


class RunError(RuntimeError):
    """An operator request the run refused, or a run that does not exist; one sentence."""


def operator() -> str:
    try:
        return getpass.getuser()
    except OSError:
        return "unknown"


async def start(client: Client, settings: Settings, request: FailoverInput | FailbackInput) -> WorkflowHandle:
    action = "failover" if isinstance(request, FailoverInput) else "failback"
    return await client.start_workflow(
        WORKFLOW_NAMES[action],
        request,
        id=workflow_id(action, request.runbook.name),
        task_queue=settings.temporal.task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        # A finished run's id may be used again: the next incident is a new run.
        id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
        result_type=RunResult,
    )


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


async def watch(handle: WorkflowHandle, on_progress: Callable[[Progress], None], every: float = 0.5) -> RunResult:
    """Call on_progress with each new progress until the run ends; return its result."""
    done = asyncio.ensure_future(result(handle))
    try:
        while not done.done():
            with contextlib.suppress(RunError):  # no worker has picked the run up yet
                on_progress(await progress(handle))
            await asyncio.wait([done], timeout=every)
        return done.result()
    finally:
        done.cancel()


async def control(client: Client, run_id: str, request: str) -> ControlResult:
    handle = client.get_workflow_handle(run_id)
    argument = {
        "approve": ApproveInput(by=operator()),
        "abort": AbortInput(by=operator(), reason="operator abort"),
        "pause": PauseInput(by=operator()),
        "resume": PauseInput(by=operator()),
    }[request]
    try:
        return await handle.execute_update(request, argument, result_type=ControlResult)
    except RPCError as exc:
        raise RunError(f"run {run_id}: {_rpc(exc)}") from None
    except Exception as exc:  # WorkflowUpdateFailedError: the validator's reason
        cause = getattr(exc, "cause", None)
        raise RunError(f"run {run_id} refused {request}: {getattr(cause, 'message', None) or exc}") from None


async def latest_runs(client: Client, limit: int = 20) -> list[tuple[str, str]]:
    """(workflow id, status) of recent drpilot runs, newest first."""
    runs = []
    query = " OR ".join(f"WorkflowType = '{name}'" for name in WORKFLOW_NAMES.values())
    try:
        async for execution in client.list_workflows(query, limit=limit):
            runs.append((execution.id, execution.status.name.lower() if execution.status else "unknown"))
    except RPCError as exc:
        raise RunError(_rpc(exc)) from None
    return runs

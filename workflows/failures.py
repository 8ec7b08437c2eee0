"""How a run's steps fail, and how a failure is told in one line of the timeline."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError, is_cancelled_exception

with workflow.unsafe.imports_passed_through():
    from activities import contracts as c
    from workflows.plan import PlanError
    from workflows.types import Status


class PhaseFailed(Exception):
    """A gate or step failed: the run ends with `status` and this message, loudly, but as a
    result rather than a Temporal failure, so the timeline and evidence reach the caller."""

    def __init__(self, message: str, *, status: Status = "failed", evidence: list[Any] | None = None):
        super().__init__(message)
        self.status = status
        self.evidence = evidence or []


class Aborted(Exception):
    """The run stops here and compensates, as if an operator had sent `abort`."""


class NoHealthyDestination(Exception):
    """No region of the intended destination passes a health check now: DNS stays."""

    def __init__(self, message: str, evidence: list[c.CheckEvidence]):
        super().__init__(message)
        self.evidence = evidence


def error_type(exc: BaseException) -> str | None:
    """The activity's own error type (ApplicationError.type), e.g. KubeNotFound."""
    cause = exc.cause if isinstance(exc, ActivityError) else exc
    return cause.type if isinstance(cause, ApplicationError) else None


def explain(exc: BaseException) -> str:
    """One line for the timeline: which activity failed and the provider's own words."""
    if isinstance(exc, ActivityError):
        cause = exc.cause
        text = getattr(cause, "message", None) or str(cause or exc)
        return f"{exc.activity_type}: {text}"
    if isinstance(exc, ApplicationError | PhaseFailed | PlanError | Aborted | NoHealthyDestination):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


async def tolerant(call: Awaitable[Any]) -> Any:
    """The activity's result, or why it failed (one line): for reads that only inform, such
    as the failed region's state."""
    try:
        return await call
    except ActivityError as exc:
        if is_cancelled_exception(exc):
            raise
        return explain(exc)

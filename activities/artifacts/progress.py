"""How an artifacts activity reports and resumes its progress.

Its work runs on a bounded pool of threads (files verified, parts copied at once); each
thread heartbeats the activity's progress model, and a retried attempt starts from the
last heartbeat's details instead of from scratch.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from typing import Any, TypeVar

from pydantic import BaseModel
from temporalio import activity
from temporalio.exceptions import CancelledError

WORKERS = 8  # files verified / parts copied at once


_Progress = TypeVar("_Progress", bound=BaseModel)


class Beat:
    """Heartbeats the caller's progress, from any of the threads working for the activity.

    Outside an activity (`drpilot runbook plan` calls verify directly) it does nothing.
    """

    def __init__(self, progress: BaseModel | None = None):
        self.progress = progress
        self.lock = threading.Lock()

    def __call__(self) -> None:
        if not activity.in_activity():
            return
        with self.lock:
            details = self.progress.model_dump(mode="json") if self.progress is not None else None
        if details is None:
            activity.heartbeat()
        else:
            activity.heartbeat(details)
        if activity.is_cancelled():
            raise CancelledError("artifacts activity cancelled")


def resumed(kind: type[_Progress]) -> _Progress | None:
    """The last heartbeat's details of an earlier attempt, if they are `kind`'s."""
    if not activity.in_activity():
        return None
    details = activity.info().heartbeat_details
    if not details:
        return None
    try:
        return kind.model_validate(details[-1])
    except ValueError:
        # Details from an older shape: start over (every step is idempotent anyway).
        activity.logger.warning("ignoring unreadable heartbeat details: %r", details[-1])
        return None


def parallel(workers: int, items: Iterable[Any], work: Callable[[Any], Any], done: Callable[[Any, Any], None]) -> None:
    """Run `work(item)` on a bounded pool; `done(item, result)` in the calling thread as each
    finishes. The first failure cancels what has not started and is raised."""
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="artifacts") as pool:
        # Each task runs in a copy of this context: it holds the activity's, so the threads
        # can heartbeat.
        pending: dict[Future, Any] = {
            pool.submit(contextvars.copy_context().run, work, item): item for item in items
        }
        try:
            while pending:
                finished, _ = wait(pending, return_when=FIRST_EXCEPTION)
                for future in finished:
                    item = pending.pop(future)
                    done(item, future.result())
        finally:
            for future in pending:
                future.cancel()

"""What lets one webhook process take alerts at Alertmanager's pace: concurrent alerts' claims
sent to admission together, and duplicates of a run this process knows is active answered
without asking Temporal again.

Both keep admission the one judge: a batch is judged in order as its claims would be one by
one (AdmissionWorkflow.claim_guarded), and a run is remembered only after admission admitted
it or attached to it, and forgotten as soon as Temporal says it closed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from temporalio.client import Client, WorkflowExecutionStatus

from activities.contracts import Admission, Claim, GuardedClaim
from drpilot.frontdoor.runs import CLAIMS_PER_UPDATE  # a guarded claim is well under a KB too

Send = Callable[[list[GuardedClaim]], Awaitable[list[Admission]]]


class Admitter:
    """One admission update in flight per process; claims arriving meanwhile wait and go
    together in the next one. Under load an alert waits for at most the update in flight and
    its own, and a burst of N new alerts costs a few updates, not N (Temporal turns away an
    11th update in flight on one workflow)."""

    def __init__(self, send: Send):
        self._send = send
        self._waiting: list[tuple[GuardedClaim, asyncio.Future[Admission]]] = []
        self._sender: asyncio.Task[None] | None = None

    async def admit(self, claim: GuardedClaim) -> Admission:
        answer = asyncio.get_running_loop().create_future()
        self._waiting.append((claim, answer))
        if self._sender is None or self._sender.done():
            self._sender = asyncio.create_task(self._send_waiting())
        # Shielded: one caller cancelled (its client went away) must not cancel the others' update.
        return await asyncio.shield(answer)

    async def _send_waiting(self) -> None:
        while self._waiting:
            batch, self._waiting = self._waiting[:CLAIMS_PER_UPDATE], self._waiting[CLAIMS_PER_UPDATE:]
            try:
                answers = await self._send([claim for claim, _ in batch])
            except Exception as exc:  # every claim of the batch gets the error (503: Alertmanager retries)
                for _, answer in batch:
                    answer.set_exception(exc)
                    answer.add_done_callback(lambda f: f.exception())  # retrieved even if nobody awaits
                continue
            for (_, answer), admission in zip(batch, answers, strict=True):
                answer.set_result(admission)


def identity(claim: Claim) -> tuple[str, ...]:
    """What makes two claims the same run for admission: its id and its request."""
    return (claim.run_id, *sorted(f"{k}={v}" for k, v in claim.request.items()))


class ActiveRuns:
    """Runs admission admitted or attached an alert's claim to, while they run: the same claim
    again attaches here. Each is watched with one long poll of its close event, so an ended
    run is forgotten within milliseconds of Temporal closing it; any error forgets it too
    (the next alert then asks admission, which is never wrong)."""

    def __init__(self, client: Client):
        self._client = client
        self._runs: dict[tuple[str, ...], tuple[str, str]] = {}  # identity -> (runbook, run id)
        self._watchers: set[asyncio.Task[None]] = set()

    def run_ids(self) -> set[str]:
        return {run_id for _, run_id in self._runs.values()}

    def get(self, claim: Claim) -> str | None:
        known = self._runs.get(identity(claim))
        return known[1] if known else None

    def of_runbook(self, runbook: str) -> str | None:
        """A run of `runbook` known active here, whatever its request (a resolved alert's)."""
        return next((run_id for rb, run_id in self._runs.values() if rb == runbook), None)

    def add(self, claim: Claim, temporal_run_id: str | None) -> None:
        key = identity(claim)
        if key in self._runs:
            return
        self._runs[key] = (claim.runbook, claim.run_id)
        watcher = asyncio.create_task(self._watch(key, claim.run_id, temporal_run_id))
        self._watchers.add(watcher)
        watcher.add_done_callback(self._watchers.discard)

    async def _watch(self, key: tuple[str, ...], run_id: str, temporal_run_id: str | None) -> None:
        try:
            if temporal_run_id is None:  # attached: the run admission named, whichever execution it is now
                described = await self._client.get_workflow_handle(run_id).describe()
                if described.status != WorkflowExecutionStatus.RUNNING:
                    return
                temporal_run_id = described.run_id
            # Pinned to the execution: a later run of the same id is not this one.
            await self._client.get_workflow_handle(run_id, run_id=temporal_run_id).result(follow_runs=False)
        except Exception:  # noqa: BLE001, S110 - failed, terminated, unreachable: all mean "ask admission again"
            pass
        finally:
            self._runs.pop(key, None)

    async def aclose(self) -> None:
        for watcher in list(self._watchers):
            watcher.cancel()
        for watcher in list(self._watchers):
            with contextlib.suppress(asyncio.CancelledError):
                await watcher

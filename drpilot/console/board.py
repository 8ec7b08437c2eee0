"""What the console shows, read from Temporal and the DNS provider: the runbook board (every
runbook of the directory: readiness, the run holding it, DNS weights now, the last drill) and
one run (its progress and, as the report draws them, its timeline and evidence).

Readiness, drills and DNS change slowly and cost calls per runbook (hundreds on a board of
hundreds), so a page never waits for them: it shows the last ones read, or "reading" before
the first, while they are read in the background, a few at a time (`READ_AT_ONCE`), and again
once older than `slow_seconds`; the board's live feed carries them to open pages as they land.
The holders (one admission query) and their progress are read on every poll of the shared
feed (feed.py).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from drpilot import report
from drpilot.domain.runbook import Runbook
from drpilot.domain.settings import Settings
from drpilot.frontdoor import readiness, runs
from drpilot.frontdoor.drills import read_history
from drpilot.frontdoor.runs import RunError
from workflows import admission
from workflows.types import AdmissionState, Progress

DnsWeights = Callable[[Runbook], Awaitable[dict[str, int]]]
SLOW_SECONDS = 15.0
# Evidence packs change once per drill: their RTO trend is read again only this often.
TREND_SECONDS = 300.0
TREND_DRILLS = 10  # drills on a runbook's RTO trend
# Slow reads in flight at once: a board of hundreds must not flood Temporal and the providers.
READ_AT_ONCE = 4
# A runbook's slow facts before the first read of them has ended.
READING: dict[str, Any] = {"reading": True, "readiness": None, "dns": None, "last_drill": None, "drills": None}


def one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:300]


@dataclass(eq=False)
class Board:
    connect: Callable[[], Awaitable[Client]]
    settings: Settings
    runbooks: dict[str, Runbook]  # by name
    dns_weights: DnsWeights
    stores: Callable[[], Any] | None = None  # where the evidence packs are (the RTO trend); None: no trend
    slow_seconds: float = SLOW_SECONDS
    _slow: dict[str, tuple[float, dict[str, Any]]] = field(default_factory=dict, init=False)
    _trends: dict[str, tuple[float, dict[str, Any] | None]] = field(default_factory=dict, init=False)
    _reading: dict[str, asyncio.Future] = field(default_factory=dict, init=False)  # background reads
    _at_once: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(READ_AT_ONCE), init=False)

    # ------------------------------------------------------------------ the board
    async def rows(self) -> list[dict[str, Any]]:
        client = await self.connect()
        holders = {h.claim.runbook: h for h in (await self._admission(client)).holders}
        names = sorted(self.runbooks)
        held = await asyncio.gather(*(self._holder(client, holders.get(name)) for name in names))
        # Last: the background reads this starts get the loop only once this answer is on its way.
        slow = [self._slow_facts(client, name) for name in names]
        return [{"name": name, **facts, "run": run} for name, facts, run in zip(names, slow, held, strict=True)]

    async def _admission(self, client: Client) -> AdmissionState:
        handle = client.get_workflow_handle(admission.workflow_id(self.settings.temporal.task_queue))
        try:
            return await handle.query("state", result_type=AdmissionState)
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                return AdmissionState()  # nothing was ever started on this task queue
            raise RunError(f"cannot read admission: {exc.message}") from None

    async def _holder(self, client: Client, holder) -> dict[str, Any] | None:
        if holder is None:
            return None
        claim = holder.claim
        run = {"run_id": claim.run_id, "action": claim.action, "requested_by": claim.requested_by,
               "since": holder.since.isoformat(), "phase": "starting", "step": None, "waiting_for": None}
        if claim.action in ("failover", "failback"):
            try:
                progress = await runs.progress(client.get_workflow_handle(claim.run_id))
                run.update(phase=progress.phase, step=progress.step, waiting_for=progress.waiting_for)
            except RunError:
                pass  # claimed, not yet picked up by a worker
        return run

    def _slow_facts(self, client: Client, name: str) -> dict[str, Any]:
        """The runbook's last slow facts read (READING before the first), at once; facts never
        read or older than `slow_seconds` are read in the background."""
        cached = self._slow.get(name)
        if (cached is None or time.monotonic() - cached[0] >= self.slow_seconds) and name not in self._reading:
            self._reading[name] = asyncio.ensure_future(self._read_slow(client, name))
            self._reading[name].add_done_callback(lambda _: self._reading.pop(name, None))
        return READING if cached is None else cached[1]

    async def _read_slow(self, client: Client, name: str) -> None:
        async with self._at_once:
            try:
                verdict, dns, drill, trend = await asyncio.gather(
                    self._readiness(client, name), self._dns(self.runbooks[name]), self._last_drill(client, name),
                    self._trend(self.runbooks[name]),
                )
                facts = {"reading": False, "readiness": verdict, "dns": dns, "last_drill": drill, "drills": trend}
            except Exception as exc:  # shown on the page and read again later; never a row stuck "reading"
                facts = {**READING, "reading": False, "dns": {"error": one_line(exc)}}
        self._slow[name] = (time.monotonic(), facts)

    async def _readiness(self, client: Client, name: str) -> dict[str, Any] | None:
        try:
            verdict = await readiness.latest(client, name)
        except RunError:
            return None  # no readiness schedule, or unreadable: shown as "no verdict yet"
        if verdict is None:
            return None
        return {"ready": verdict.ready, "since": verdict.checked_at.isoformat(),
                "checks": [{"name": c.name, "ready": c.ready, "detail": c.detail} for c in verdict.checks]}

    async def _dns(self, rb: Runbook) -> dict[str, Any]:
        try:
            return {"weights": await self.dns_weights(rb)}
        except Exception as exc:  # a provider's error is shown on the page, never raised through it
            return {"error": one_line(exc)}

    async def _last_drill(self, client: Client, name: str) -> dict[str, Any] | None:
        try:
            listed = await runs.latest_runs(client, 10, runbook=name)
        except RunError:
            return None
        drill = next((r for r in listed if r.run_id.startswith("drill:")), None)
        if drill is None:
            return None
        return {"run_id": drill.run_id, "outcome": drill.outcome or drill.state,
                "started_at": drill.started_at.isoformat() if drill.started_at else None}

    async def _trend(self, rb: Runbook) -> dict[str, Any] | None:
        """The RTO of the runbook's last drills, from their evidence packs (oldest first)."""
        if self.stores is None or rb.spec.drills is None:
            return None
        cached = self._trends.get(rb.name)
        if cached is not None and time.monotonic() - cached[0] < TREND_SECONDS:
            return cached[1]
        try:
            past = await asyncio.to_thread(read_history, rb, self.stores(), TREND_DRILLS)
            trend: dict[str, Any] = {"drills": [
                {"started_at": p.result.started_at.isoformat(), "status": p.result.status, "rto": p.result.rto_seconds_unscaled,
                 "objective": p.result.objective_rto_seconds, "met": p.result.rto_met} for p in past]}
        except Exception as exc:  # HistoryError (the store's one line), or its client failing before it answered
            trend = {"error": one_line(exc)}
        self._trends[rb.name] = (time.monotonic(), trend)
        return trend

    # ------------------------------------------------------------------ one run
    async def progress(self, run_id: str) -> Progress:
        try:
            return await runs.progress((await self.connect()).get_workflow_handle(run_id))
        except RunError:
            raise
        except Exception as exc:  # it answered, not as a run does: a drill, a schedule's, another workflow
            raise RunError(f"run {run_id} is not a failover or failback ({one_line(exc)})") from None

    async def report_html(self, run_id: str, progress: Progress) -> str:
        """The run's timeline, weights and evidence as the report draws them (one renderer),
        its steps under the phases the progress reports while it runs."""
        history = await runs.history(await self.connect(), run_id)
        try:
            return report.sections_html(report.build(report.read(history, progress.phases)))
        except report.NotARun as exc:
            raise RunError(str(exc)) from None

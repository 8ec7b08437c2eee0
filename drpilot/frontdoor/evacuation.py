"""Evacuating a region: every runbook of a directory that serves from it, failed over together.

A region loss is not one runbook: every model service serving from the region must move at
once. An evacuation is a front door over the ordinary failover, not a procedure of its own:
each runbook gets its own FailoverWorkflow with all its guardrails (its admission claim, its
approvals, its gates), and the evacuation only chooses which runbooks, plans them, starts
them together (one admission update for the whole fleet, runs.start_many) and follows them.

Which runbooks: those whose DNS gives the region weight now, read live (a runbook already
moved away, or one that has no such region, is left alone and listed as such). One whose
file is invalid or whose DNS cannot be read is listed with the reason and not started:
an evacuation never moves traffic it could not look at.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from temporalio.client import Client

from drpilot.domain.loader import RunbookError, load_runbook
from drpilot.domain.runbook import Runbook
from drpilot.domain.settings import Settings
from drpilot.frontdoor import runs
from drpilot.frontdoor.dry_run import LiveState, Plan, plan_failover
from workflows.plan import PlanError
from workflows.types import FailoverInput, Progress, RunResult

# Runbooks surveyed at once: each reads its DNS and, when it serves from the region, plans
# (its clusters and artifacts): I/O-bound, through clients shared by the threads.
SURVEY_THREADS = 16
# Progress queries in flight at once while following the fleet.
WATCH_IN_FLIGHT = 16


@dataclass(frozen=True)
class Member:
    """One runbook of the directory, as the evacuation found it."""

    file: Path
    runbook: Runbook | None
    weights: dict[str, int]  # its DNS now ({} when unread)
    serving: bool  # it serves from the region: it will be failed over
    plan: Plan | None  # what its failover would do now (serving ones)
    problem: str = ""  # why it is not evacuated though it may serve from the region

    @property
    def name(self) -> str:
        return self.runbook.name if self.runbook is not None else self.file.name

    @property
    def left_alone(self) -> str:
        """Why it is not part of the evacuation ("" when it is)."""
        if self.problem or self.serving:
            return self.problem
        assert self.runbook is not None
        return "not serving from the region" if self.weights else "has no such region"


def runbook_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())


def survey(directory: Path, region: str, settings: Settings, targets: list[str] | None = None) -> list[Member]:
    """Every runbook file of `directory`: whether it serves from `region` now, and, if it
    does, the plan of its failover. Read-only."""
    live = LiveState.from_settings(settings)

    def one(file: Path) -> Member:
        try:
            rb = load_runbook(file)
        except RunbookError as exc:
            return Member(file, None, {}, False, None, f"invalid: {str(exc).splitlines()[0]}")
        if region not in rb.regions:
            return Member(file, rb, {}, False, None)
        try:
            weights = live.weights(rb)
        except Exception as exc:  # noqa: BLE001 - any provider error: say it, start nothing
            return Member(file, rb, {}, False, None, f"cannot read its DNS: {getattr(exc, 'message', None) or exc}")
        if weights.get(region, 0) <= 0:
            return Member(file, rb, weights, False, None)
        try:
            plan = plan_failover(rb, region, targets, settings, live=live)
        except PlanError as exc:
            return Member(file, rb, weights, True, None, f"cannot plan: {exc}")
        return Member(file, rb, weights, True, plan)

    with ThreadPoolExecutor(SURVEY_THREADS) as pool:
        return list(pool.map(one, runbook_files(directory)))


def evacuees(members: list[Member]) -> list[Member]:
    return [m for m in members if m.serving and not m.problem]


async def start(
    client: Client, settings: Settings, members: list[Member], request: Callable[[Runbook], FailoverInput]
) -> list[runs.Started | runs.RunError]:
    """Every evacuee's failover, admitted in one update and started together."""
    return await runs.start_many(client, settings, [request(m.runbook) for m in members if m.runbook is not None])


@dataclass
class Fleet:
    """The runs of an evacuation while they go: each one's last progress and, once it
    ended, its result (or why it has none)."""

    progress: dict[str, Progress]
    results: dict[str, RunResult | runs.RunError]

    def done(self, run_id: str) -> bool:
        return run_id in self.results


async def follow(
    started: list[runs.Started], on_change: Callable[[Fleet], None], every: float = 1.0
) -> Fleet:
    """Poll every run's progress (WATCH_IN_FLIGHT at a time) until all have ended; call
    `on_change` after each round. One poll per run per round, whoever watches."""
    fleet = Fleet(progress={}, results={})
    gate = asyncio.Semaphore(WATCH_IN_FLIGHT)
    endings = {s.handle.id: asyncio.ensure_future(runs.result(s.handle)) for s in started}

    async def poll(s: runs.Started) -> None:
        async with gate:
            with contextlib.suppress(runs.RunError):  # no worker has picked it up yet
                fleet.progress[s.handle.id] = await runs.progress(s.handle)

    try:
        while True:
            for run_id, ending in endings.items():
                if ending.done() and run_id not in fleet.results:
                    fleet.results[run_id] = ending.exception() or ending.result()  # type: ignore[assignment]
            await asyncio.gather(*(poll(s) for s in started if not fleet.done(s.handle.id)))
            on_change(fleet)
            if len(fleet.results) == len(endings):
                return fleet
            # The last runs may have ended during this round: their results are taken next.
            if pending := [e for e in endings.values() if not e.done()]:
                await asyncio.wait(pending, timeout=every)
    finally:
        for ending in endings.values():
            ending.cancel()

"""Parallel branches of a run, and work that must finish even when the run is cancelled."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from workflows import projection

T = TypeVar("T")


async def together(*branches: Awaitable[Any]) -> list[Any]:
    """Run independent branches in parallel; the first failure cancels the rest (after they
    stop) and is raised, so no activity is left running unobserved. Each branch keeps its
    own scaled waits; the RTO projection follows the longest (workflows/projection.py)."""
    paths, started = projection.fork(len(branches)), workflow.now()
    if paths is not None:
        branches = tuple(projection.along(p, b) for p, b in zip(paths, branches, strict=True))
    tasks = [asyncio.ensure_future(b) for b in branches]
    try:
        results = await asyncio.gather(*tasks)
        if paths is not None:
            projection.join(paths, started)
        return results
    except (Exception, asyncio.CancelledError):
        for task in tasks:
            if not task.done():
                task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


async def together_by_name(**groups: list[Awaitable[Any]]) -> dict[str, list[Any]]:
    """`together` over named groups of branches, each group's results under its name. The
    branches start in the order the groups are given, so the activities are scheduled in
    that order: a run's command sequence follows the order written here."""
    flat = [branch for group in groups.values() for branch in group]
    results = iter(await together(*flat))
    return {name: [next(results) for _ in group] for name, group in groups.items()}


async def settled(work: Awaitable[T], on_cancel: Callable[[], None] | None = None) -> T:
    """Finish `work` even if Temporal cancels the workflow meanwhile: a compensation, a
    restore or an evidence write cut half-way would leave DNS mid-shift, the runbook moved,
    or a drill unrecorded. `on_cancel` says so in the timeline; the cancel is then ignored."""
    task = asyncio.ensure_future(work)
    while True:
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            if task.done():
                raise
            if on_cancel is not None:
                on_cancel()

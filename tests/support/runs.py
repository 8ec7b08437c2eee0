"""Watching a failover or failback while it runs, through its progress query."""

from __future__ import annotations

import asyncio

from workflows.failover import FailoverWorkflow


async def wait_for(handle, predicate, timeout: float = 20.0):
    """Poll the progress query (in real time: queries do not skip time) until predicate holds."""
    async with asyncio.timeout(timeout):
        while True:
            progress = await handle.query(FailoverWorkflow.progress)
            if predicate(progress):
                return progress
            await asyncio.sleep(0.02)

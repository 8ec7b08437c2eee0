"""Fan-out: many watchers of one run share one poll, and the poll stops with the last watcher."""

from __future__ import annotations

import asyncio

from drpilot.console.feed import Feeds


async def test_twenty_watchers_share_one_poll():
    reads = 0

    async def fetch() -> str:
        nonlocal reads
        reads += 1
        return str(reads)

    feed = Feeds(every=0.001).get("run:failover:x", fetch)

    async def watcher() -> list[str]:
        seen = []
        async for value in feed.watch():
            seen.append(value)
            if len(seen) == 3:
                return seen
        raise AssertionError("the feed ended")

    watchers = [asyncio.ensure_future(watcher()) for _ in range(20)]
    seen = await asyncio.gather(*watchers)
    # Every watcher saw three values, in order; a poll per watcher would have read 60 times.
    assert all(len(s) == 3 and [int(v) for v in s] == sorted(int(v) for v in s) for s in seen)
    assert reads == feed.polls and reads < 20
    assert feed.watchers == 0 and feed._task is None  # the last one out stopped the poll


async def test_a_read_that_fails_unexpectedly_does_not_end_the_poll():
    reads = 0

    async def fetch() -> str:
        nonlocal reads
        reads += 1
        if reads == 1:
            raise KeyError("a history the report could not read")
        return "read again"

    feed = Feeds(every=0.001).get("run:failover:x", fetch)
    watch = feed.watch()
    assert await asyncio.wait_for(anext(watch), 5) == "read again"
    await watch.aclose()

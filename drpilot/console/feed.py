"""One shared poll per thing watched (a run, the runbook board), fanned out to every watcher.

Fifty people watching one run during an outage must not be fifty Temporal queries a second:
the first watcher starts the poll, every later one reads its latest value, and the poll stops
when the last watcher leaves. A watcher that falls behind gets the newest value, never a queue
of stale ones.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

from drpilot.frontdoor.logs import get_logger

Fetch = Callable[[], Awaitable[str]]


@dataclass(eq=False)
class Feed:
    fetch: Fetch  # the one read, returning what the watchers are sent (JSON text)
    every: float
    latest: str | None = field(default=None, init=False)
    polls: int = field(default=0, init=False)  # reads made: what the fan-out saves is measured by it
    _watchers: set[asyncio.Queue[str]] = field(default_factory=set, init=False)
    _task: asyncio.Task | None = field(default=None, init=False)

    @property
    def watchers(self) -> int:
        return len(self._watchers)

    async def watch(self) -> AsyncIterator[str]:
        """Each new value, from the latest one on, until the caller stops iterating."""
        queue: asyncio.Queue[str] = asyncio.Queue(maxsize=1)
        self._watchers.add(queue)
        if self._task is None:
            self._task = asyncio.ensure_future(self._poll())
        try:
            if self.latest is not None:
                yield self.latest
            while True:
                yield await queue.get()
        finally:
            self._watchers.discard(queue)
            if not self._watchers and self._task is not None:
                self._task.cancel()
                self._task = None
                self.latest = None  # the next first watcher waits for a fresh read, not a stale one

    async def _poll(self) -> None:
        while True:
            try:
                value = await self.fetch()  # a fetch answers the errors it expects as a value
            except Exception as exc:  # an unexpected one: logged, this round skipped; the poll never dies
                get_logger(component="console").warning("live feed read failed", error=" ".join(str(exc).split())[:300],
                                                         kind=type(exc).__name__)
                await asyncio.sleep(self.every)
                continue
            self.polls += 1
            if value != self.latest:
                self.latest = value
                for queue in self._watchers:
                    with contextlib.suppress(asyncio.QueueEmpty):
                        queue.get_nowait()  # a watcher behind skips to the newest
                    queue.put_nowait(value)
            await asyncio.sleep(self.every)


@dataclass(eq=False)
class Feeds:
    """The feeds by key (a run id, "board"); a feed nobody watches is dropped on the next look."""

    every: float
    _feeds: dict[str, Feed] = field(default_factory=dict, init=False)

    def get(self, key: str, fetch: Fetch) -> Feed:
        for stale in [k for k, feed in self._feeds.items() if feed.watchers == 0 and k != key]:
            del self._feeds[stale]
        if key not in self._feeds:
            self._feeds[key] = Feed(fetch, self.every)
        return self._feeds[key]

"""Servers on 127.0.0.1 for the length of a test: an emulator started and stopped, or a
real uvicorn serving an ASGI app (a free port) in a thread or in the test's event loop, where
the Temporal client the app uses lives."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Protocol, TypeVar

import uvicorn


class Startable(Protocol):
    def start(self) -> None: ...
    def stop(self) -> None: ...


S = TypeVar("S", bound=Startable)


@contextmanager
def serving(server: S) -> Iterator[S]:
    """`server` started, and stopped after, even when the block fails."""
    server.start()
    try:
        yield server
    finally:
        server.stop()


@contextmanager
def uvicorn_on_loopback(app) -> Iterator[str]:
    """A real uvicorn serving `app` on 127.0.0.1 (a free port) in a thread; its base URL."""
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None, access_log=False, lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@asynccontextmanager
async def uvicorn_in_loop(app) -> AsyncIterator[str]:
    """A real uvicorn serving `app` on 127.0.0.1 (a free port) in this event loop, where the
    Temporal client the app uses lives; its base URL."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None, access_log=False, lifespan="off"))
    task = asyncio.create_task(server.serve())
    async with asyncio.timeout(10):
        while not server.started:
            assert not task.done(), "uvicorn did not start"
            await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)

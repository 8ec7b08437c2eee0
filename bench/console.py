"""The console: its home page with 200 runbooks, and 50 people watching one run.

The world: one twin for runbooks/llm-inference.yaml (its Temporal dev server, one `drpilot
worker`), and N copies of the runbook, each with its own name and DNS record in the twin's
zone (bench/evacuation.py's copies), all on the console's board. The console runs in this
process as `drpilot console` serves it (uvicorn on 127.0.0.1, a dev identity).

Measured:
1. the home page (`GET /`): the first request of a console just started (it answers with
   "reading…" where the board's slow facts, every runbook's readiness, DNS weights, last
   drill and RTO trend, are not read yet: they are read in the background, `READ_AT_ONCE` at
   a time), how long until every one was read (`GET /api/runbooks` has no row "reading"),
   and then warm requests (one admission query; the slow facts from the board's cache);
2. fan-out: one failover waiting at its approval gate, watched through its live feed
   (`GET /events/runs/RUN`, Server-Sent Events) first by 1 person, then by 50 at once; the
   feed's reads of the run (each one `progress` query to Temporal) per second in each window.

`python -m bench.console` prints the rows; `make bench` puts them in BENCHMARKS.md.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import uvicorn
from drpilot_twin.twin import Twin

from bench.evacuation import BASE, host, runbooks
from bench.workers import ready_worker, stop
from drpilot.console.app import Console
from drpilot.console.identity import IdentitySource
from drpilot.console.policy import Policy
from drpilot.domain.loader import load_runbook
from drpilot.domain.settings import load_settings
from drpilot.frontdoor.runs import start
from drpilot.frontdoor.temporal import connect
from drpilot.webhook.guardrails import provider_weights
from workflows.types import FailoverInput

RUNBOOKS = int(os.environ.get("BENCH_CONSOLE_RUNBOOKS", "200"))
WATCHERS = int(os.environ.get("BENCH_CONSOLE_WATCHERS", "50"))
REQUESTS = int(os.environ.get("BENCH_CONSOLE_REQUESTS", "20"))
WINDOW_SECONDS = 10.0  # each fan-out window
PERSON = "bench@example.com"

CONSOLE_HEADER = [
    "## Console: the home page of many runbooks, and many people watching one run",
    "",
    "`python -m bench.console` (also part of `make bench`; `BENCH_CONSOLE_RUNBOOKS`, `BENCH_CONSOLE_WATCHERS`,",
    "`BENCH_CONSOLE_REQUESTS`): copies of `runbooks/llm-inference.yaml`, each with its own name and DNS",
    "record in one twin's zone (its Temporal dev server and one `drpilot worker`), all on the board of",
    "a console served by uvicorn on 127.0.0.1 in the bench's process, as `drpilot console --dev-identity`.",
    "",
    "| what | result |",
    "| --- | --- |",
]
CONSOLE_NOTE = [
    "The pages are asked from another thread, as a browser asks: the bench's own event loop also",
    "serves the console, and timing from it measured the loop getting round to reading the answer",
    "(about 0.5 s for the first page while the background reads started), not the answer.",
    "",
    "No page waits for the board's slow facts (each runbook's last readiness verdict, its DNS weights",
    "through the provider, its last drill from visibility, its RTO trend from the evidence packs): the",
    "first page of a console just started answers with \"reading…\" in their place while they are read in",
    "the background, `READ_AT_ONCE` at a time, and the board's live feed fills them in on open pages as",
    "they land; after that a page shows the last ones read and those older than `SLOW_SECONDS` are read",
    "again in the background. Before this the first page waited for all of them (43.9 s here); the",
    "DNS weights also came through a provider built per read (a new boto3 client and hosted-zone",
    "lookup each time), now one per process. A run's live feed reads the run once per poll whoever",
    "watches (`drpilot/console/feed.py`): fifty watchers cost the same Temporal queries as one.",
]


async def _measure(settings, copies) -> dict:
    client = await connect(settings.temporal)
    identity = IdentitySource.configure(header=None, trusted_proxies=[], dev=PERSON, host="127.0.0.1")
    console = Console.build(lambda: connect(settings.temporal), settings, {rb.name: rb for rb in copies},
                            provider_weights(settings), identity, Policy.default())
    server = uvicorn.Server(uvicorn.Config(console.app(), host="127.0.0.1", port=0, log_config=None,
                                           access_log=False, lifespan="off"))
    serving = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    url = f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    try:
        # The pages are asked from another thread, as a browser asks: what is timed is the
        # console's answer, not this loop (which serves the console too) getting round to it.
        with httpx.Client(base_url=url, timeout=60) as pages:
            async with httpx.AsyncClient(base_url=url, timeout=60) as http:
                begin = time.perf_counter()
                cold, size = await asyncio.to_thread(_home, pages)
                during = []  # home pages asked while the background reads are under way
                while any(row["reading"] for row in (await http.get("/api/runbooks")).json()["runbooks"]):
                    during.append((await asyncio.to_thread(_home, pages))[0])
                    await asyncio.sleep(0.2)
                filled = time.perf_counter() - begin
                warm = [(await asyncio.to_thread(_home, pages))[0] for _ in range(REQUESTS)]
                # A failover an alert started waits for its approval: a run that stays live.
                watched = (await start(client, settings, FailoverInput(
                    runbook=copies[0], failed_region="us-east-1", trigger="alert", requested_by="bench", speed=300,
                ))).handle
                rates = {}
                for people in (1, WATCHERS):
                    rates[people] = await _watched(http, console, watched.id, people)
                await watched.cancel()
            return {"cold": cold, "filled": filled, "during": during, "warm": warm, "rates": rates, "bytes": size}
    finally:
        server.should_exit = True
        await asyncio.wait_for(serving, 10)


def _home(pages: httpx.Client) -> tuple[float, int]:
    """`GET /`: seconds, bytes."""
    begin = time.perf_counter()
    answer = pages.get("/")
    answer.raise_for_status()
    return time.perf_counter() - begin, len(answer.content)


async def _watched(http: httpx.AsyncClient, console: Console, run_id: str, people: int) -> float:
    """The run's feed reads per second while `people` watch it."""
    opened = asyncio.Event()
    seen = 0

    async def one() -> None:
        nonlocal seen
        async with http.stream("GET", f"/events/runs/{run_id}") as events:
            async for line in events.aiter_lines():
                if line.startswith("data:"):
                    seen += 1
                    if seen >= people:
                        opened.set()
                    await asyncio.sleep(WINDOW_SECONDS * 3)  # hold the stream open

    watchers = [asyncio.create_task(one()) for _ in range(people)]
    try:
        await asyncio.wait_for(opened.wait(), 60)
        feed = console.feeds.get(f"run:{run_id}", lambda: asyncio.sleep(0))  # the feed the watchers share
        before, begin = feed.polls, time.perf_counter()
        await asyncio.sleep(WINDOW_SECONDS)
        return (feed.polls - before) / (time.perf_counter() - begin)
    finally:
        for w in watchers:
            w.cancel()
        await asyncio.gather(*watchers, return_exceptions=True)
        await asyncio.sleep(0.5)  # the feed stops when its last watcher leaves


def bench_console() -> list[str]:
    with tempfile.TemporaryDirectory(prefix="drpilot-console-") as tmp:
        copies = runbooks(RUNBOOKS, Path(tmp) / "runbooks")
        with Twin(load_runbook(BASE), Path(tmp) / "twin", speed=300, prometheus=False, alertmanager=False) as twin:
            host(twin, copies)
            env = {**os.environ, **twin.env()}
            worker = ready_worker(env)
            saved = dict(os.environ)
            os.environ.update(twin.env())  # the console's provider reads use the twin, as `source DIR/env` would
            try:
                r = asyncio.run(_measure(load_settings(env), copies))
            finally:
                os.environ.clear()
                os.environ.update(saved)
                stop(worker)
    print(f"console: home page of {RUNBOOKS} runbooks, warm median {statistics.median(r['warm']) * 1000:.0f} ms",
          file=sys.stderr)
    warm = sorted(r["warm"])
    p95 = warm[max(0, int(len(warm) * 0.95) - 1)]
    one, many = r["rates"][1], r["rates"][WATCHERS]
    return [
        f"| home page (`GET /`), {RUNBOOKS} runbooks, first request of a console just started | "
        f"{r['cold'] * 1000:.0f} ms; {r['bytes'] / 1024:.0f} KiB |",
        f"| every runbook's slow facts read in the background after that first request | {r['filled']:.1f} s |",
        f"| home page, {RUNBOOKS} runbooks, while those reads are under way (n={len(r['during'])}) | "
        f"median {statistics.median(r['during'] or [0]) * 1000:.0f} ms, max {max(r['during'] or [0]) * 1000:.0f} ms |",
        f"| home page, {RUNBOOKS} runbooks, warm (n={len(warm)}) | median {statistics.median(warm) * 1000:.0f} ms, "
        f"p95 {p95 * 1000:.0f} ms, max {warm[-1] * 1000:.0f} ms |",
        f"| one run's live feed: Temporal reads per second, 1 watcher vs {WATCHERS} | "
        f"{one:.2f}/s vs {many:.2f}/s ({many / one if one else float('nan'):.2f}x) |",
    ]


if __name__ == "__main__":
    print("\n".join([*CONSOLE_HEADER, *bench_console(), "", *CONSOLE_NOTE]))

"""The board never makes a page wait for its slow facts: the first home page answers with
"reading…" while they are read in the background, and the board's live feed brings them.
Ordered, not timed: the DNS read blocks until the test releases it, after the page answered."""

from __future__ import annotations

import asyncio

from drpilot.domain.runbook import Runbook
from tests.support.console import next_event
from tests.support.runbooks import runbook
from tests.support.world import World


async def test_the_first_page_answers_before_the_slow_facts_and_the_feed_brings_them(serve_console):
    rb = runbook("llm-inference.yaml")
    world = World.normal(rb)
    asked, release = asyncio.Event(), asyncio.Event()

    async def weights_when_released(read: Runbook) -> dict[str, int]:
        asked.set()
        await release.wait()
        return dict(world.dns)

    async with serve_console(world, rb, dns_weights=weights_when_released) as served:
        viewer = served.as_("carol@example.com")
        home = await asyncio.wait_for(served.http.get("/", headers=viewer), 10)
        assert home.status_code == 200
        assert '<tr data-runbook="llm-inference" data-reading>' in home.text and "reading…" in home.text
        await asyncio.wait_for(asked.wait(), 10)  # the read the page did not wait for is under way
        async with served.http.stream("GET", "/events/board", headers=viewer) as events:
            lines = events.aiter_lines()
            assert "reading…" in (await next_event(lines))["html"]
            release.set()
            while "reading…" in (seen := await next_event(lines))["html"]:
                pass
        weights = ", ".join(f"{region} {weight}%" for region, weight in sorted(world.dns.items()))
        assert f"<td>{weights}</td>" in seen["html"]
        assert "no verdict yet" in seen["html"] and "none recorded" in seen["html"]

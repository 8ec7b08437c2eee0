"""The console in a real browser (Debian's headless chromium, driven by selenium): a failover
waiting for approval appears on the home page without a reload, the person who started it is
shown why there is no Approve button, and another person approving from the page moves the
run on; then a failback started from the home page's form (the runbook's name typed back),
whose weights chart moves as the run shifts traffic."""

from __future__ import annotations

import asyncio
import os
from urllib.parse import unquote

import pytest

from activities.contracts import PROBES_ANALYSE
from tests.support.browser import DRIVER, Browser
from tests.support.chromium import CHROMIUM
from tests.support.paths import ROOT
from tests.support.runbooks import runbook
from tests.support.runs import wait_for
from tests.support.world import outage

pytestmark = pytest.mark.skipif(not (CHROMIUM and DRIVER), reason="needs Debian's chromium and chromium-driver (make setup)")
RUN = "failover:llm-inference"
BACK = "failback:llm-inference"
# DRPILOT_SAVE_SCREENSHOT=1 rewrites docs/console-run.png, the run page README shows.
SAVE_SCREENSHOT = os.environ.get("DRPILOT_SAVE_SCREENSHOT") == "1"


async def test_approving_a_failover_then_starting_a_failback_from_the_page(serve_console, tmp_path):
    rb = runbook("llm-inference.yaml", spec__approvals__failover="always", spec__approvals__failback="always")
    world = outage(rb, "us-east-1")
    async with serve_console(world, rb) as served:
        browser = Browser(str(served.http.base_url).rstrip("/"), tmp_path / "profile")
        try:
            await browser.do(browser.sign_in, "bob@example.com")
            await browser.do(browser.open, "/")
            await browser.do(browser.wait_for, lambda d: "no run" in browser.text("#live"))
            assert "llm-inference" in browser.text("#live")

            # Alice starts it elsewhere; Bob's page shows it waiting, with no reload.
            started = await served.act("alice@example.com", "/api/runbooks/llm-inference/failover",
                                       {"from": "us-east-1", "confirm": "llm-inference"})
            assert started.status_code == 200
            await browser.do(browser.wait_for, lambda d: "waiting for approval" in browser.text("#live"))
            assert "by alice@example.com" in browser.text("#live")

            # Alice, who started it, is told why she has no Approve button.
            await browser.do(browser.sign_in, "alice@example.com")
            await browser.do(browser.open, f"/runs/{RUN}")
            await browser.do(browser.wait_for, lambda d: browser.find("#four-eyes").is_displayed())
            assert not browser.find('button[data-do="approve"]').is_displayed()
            assert browser.find('button[data-do="pause"]').is_displayed()

            # Bob approves from the run page; the run moves on.
            await browser.do(browser.sign_in, "bob@example.com")
            await browser.do(browser.open, f"/runs/{RUN}")
            approve = await browser.do(browser.wait_for, lambda d: browser.find('button[data-do="approve"]').is_displayed()
                                       and browser.find('button[data-do="approve"]'))
            assert not browser.find("#four-eyes").is_displayed()
            assert 'class="timeline"' in browser.find("#report").get_attribute("innerHTML")  # the report's own chart
            shot = await browser.do(browser.driver.get_screenshot_as_png)
            assert shot[:8] == b"\x89PNG\r\n\x1a\n"
            if SAVE_SCREENSHOT:  # README's picture of the run page
                (ROOT / "docs" / "console-run.png").write_bytes(shot)
            await browser.do(approve.click)
            await browser.do(browser.wait_for, lambda d: browser.text("#said") == "approved by bob@example.com")
            result = await served.result(RUN)
            await wait_for(served.harness.client.get_workflow_handle(RUN), lambda p: p.state == "finished")
            await browser.do(browser.wait_for, lambda d: "completed" in browser.text("#live"))
            assert result.status == "completed" and result.approved_by == "bob@example.com"
            assert world.dns == {"us-east-1": 0, "us-west-2": 100}

            # us-east-1 is back. Bob starts the failback from the home page's form, typing the name.
            world.dark.clear()
            world.hold = (PROBES_ANALYSE, 1 + sum(1 for name, _ in world.calls if name == PROBES_ANALYSE))  # the first shift step's
            await browser.do(browser.open, "/")
            await browser.do(browser.start, "failback", "us-east-1", "llm-inference")
            await browser.do(browser.wait_for, lambda d: unquote(d.current_url).endswith(f"/runs/{BACK}"))  # its run page
            back = served.harness.client.get_workflow_handle(BACK)
            await wait_for(back, lambda p: p.waiting_for == "approval" and p.requested_by == "bob@example.com")
            await browser.do(browser.wait_for, lambda d: "approval" in browser.text("#live"))
            assert browser.weights_drawn("us-east-1") == {0}  # the chart: DNS as the run read it, unmoved

            # Alice approves; the run holds inside its first step's analysis, DNS moved to that step.
            assert (await served.act("alice@example.com", f"/api/runs/{BACK}/approve")).status_code == 200
            async with served.env.time_skipping_unlocked():  # the step's TTL and bake timers
                await asyncio.wait_for(world.entered.wait(), 30)
            assert world.dns == {"us-east-1": 10, "us-west-2": 90}
            await browser.do(browser.wait_for, lambda d: 10 in browser.weights_drawn("us-east-1"))
            assert browser.weights_drawn("us-east-1") == {0, 10} and browser.weights_drawn("us-west-2") == {100, 90}
            assert "us-east-1 10%, us-west-2 90%" in browser.text("#live")
            world.release.set()
            assert (await served.result(BACK)).status == "completed"
        finally:
            await browser.do(browser.close)
    assert world.dns == {"us-east-1": 100, "us-west-2": 0}

"""The console's pages: drawn on the server with everything escaped, a run's timeline and
evidence by the report's own renderer, headers that allow only the console's own script and
no framing, and nothing without an identity but the health check and the script."""

from __future__ import annotations

from drpilot.console.app import HEADERS
from drpilot.console.pages import board_rows
from tests.support.runbooks import runbook
from tests.support.runs import wait_for
from tests.support.world import outage

RUN = "failover:llm-inference"


async def test_pages_are_escaped_framed_by_the_csp_and_draw_the_run_as_the_report_does(serve_console):
    rb = runbook("llm-inference.yaml", spec__approvals__failover="always")
    async with serve_console(outage(rb, "us-east-1"), rb) as served:
        http = served.http
        assert (await http.get("/")).status_code == 401
        assert (await http.get("/healthz")).text == "ok\n"
        script = await http.get("/static/console.js")
        assert script.status_code == 200 and script.headers["content-type"].startswith("text/javascript")

        home = await http.get("/", headers=served.as_('<img src=x onerror="alert(1)">'))
        assert home.status_code == 200
        assert home.headers["content-security-policy"] == HEADERS["Content-Security-Policy"]
        assert "script-src 'self'" in home.headers["content-security-policy"] and "frame-ancestors 'none'" in home.headers["content-security-policy"]
        assert "<img src=x" not in home.text and "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in home.text
        assert "<script>" not in home.text and '<script src="/static/console.js" defer></script>' in home.text
        assert "No runbook you may view." in home.text and "Start failover" not in home.text  # the policy grants it nothing
        alice = await http.get("/", headers=served.as_("alice@example.com"))
        assert 'data-feed="/events/board"' in alice.text and "Start failover" in alice.text and "Start drill" in alice.text
        carol = await http.get("/", headers=served.as_("carol@example.com"))  # may view, not start
        assert "<b>llm-inference</b>" in carol.text and "Start failover" not in carol.text

        started = await served.act("alice@example.com", "/api/runbooks/llm-inference/failover", {"from": "us-east-1", "confirm": "llm-inference"})
        assert started.status_code == 200
        await wait_for(served.harness.client.get_workflow_handle(RUN), lambda p: p.waiting_for == "approval")
        page = await http.get(f"/runs/{RUN}", headers=served.as_("bob@example.com"))
        assert page.status_code == 200
        assert "<th>waiting for</th><td><b>approval</b></td>" in page.text
        assert "<th>started by</th><td>alice@example.com</td>" in page.text
        # The report's own timeline, its steps under the phases the running run reports.
        assert 'class="timeline"' in page.text and ">health-gate</text>" in page.text and ">approval</text>" in page.text
        assert ">final state read</text>" not in page.text
        assert "<h2>Trigger and approval</h2>" in page.text and "a person, from the web console (alice@example.com)" in page.text
        assert (await http.get("/runs/failover:nothing", headers=served.as_("bob@example.com"))).status_code == 404
        await served.act("alice@example.com", f"/api/runs/{RUN}/abort", {"confirm": "llm-inference"})


def test_the_board_shows_each_readiness_check_and_escapes_what_it_says():
    row = {
        "name": "llm-inference", "run": None, "dns": {"weights": {"us-east-1": 100, "us-west-2": 0}}, "last_drill": None,
        "readiness": {"ready": False, "since": "2026-12-07T07:00:00+00:00", "checks": [
            {"name": "dns", "ready": True, "detail": ""},
            {"name": "us-west-2: llm-7b 2024-01-15", "ready": False, "detail": "1 problem(s) (e.g. <weights.bin> missing)"},
        ]},
    }
    html = board_rows([row])
    assert '<span class="notready">NOT READY</span> since 2026-12-07T07:00:00+00:00' in html
    assert '<li><span class="ready">ok</span> dns</li>' in html
    assert "<li><span class=\"notready\">no</span> us-west-2: llm-7b 2024-01-15: 1 problem(s) (e.g. &lt;weights.bin&gt; missing)</li>" in html
    assert "<td>us-east-1 100%, us-west-2 0%</td>" in html


def test_a_run_holding_a_runbook_links_to_its_page_and_a_drill_to_the_drills_page():
    row = {"name": "llm-inference", "dns": {"weights": {}}, "last_drill": None, "readiness": None}
    failover = {"run_id": "failover:llm-inference", "phase": "prepare", "step": None}
    drill = {"run_id": "drill:llm-inference-20261207T070000Z", "phase": "failover", "step": None}
    assert '<a href="/runs/failover:llm-inference">' in board_rows([{**row, "run": failover}])
    # A drill has no run page (its query is a drill's, not a run's): its schedule and history are.
    assert '<a href="/drills">drill:llm-inference-20261207T070000Z</a>' in board_rows([{**row, "run": drill}])

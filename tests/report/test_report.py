"""Run reports from real runs: the workflows run on the time-skipping Temporal server against
the simulated world (tests/support/world.py), the report is read from the run's Temporal history,
through the library and through `drpilot report`, and the HTML is opened in Debian's
headless chromium."""

from __future__ import annotations

import asyncio
import re
import subprocess
import xml.etree.ElementTree as ET

import pytest

from drpilot import report
from tests.support.chromium import CHROMIUM, chromium
from tests.support.commands import drpilot
from tests.support.paths import ROOT
from tests.support.runbooks import runbook
from tests.support.runs import wait_for
from tests.support.world import after_failover, outage
from workflows.failback import FailbackWorkflow
from workflows.failover import FailoverWorkflow
from workflows.types import ApproveInput, FailbackInput, FailoverInput

SVG = "{http://www.w3.org/2000/svg}"


async def rolled_back_failback(make_harness):
    rb = runbook("llm-inference.yaml")
    world = after_failover(rb, "us-east-1", {"us-west-2": 100})
    world.degrade_at["us-east-1"] = 50
    result, handle = await make_harness(world).run(FailbackWorkflow.run, FailbackInput(runbook=rb, original_region="us-east-1"))
    assert result.status == "rolled_back"
    return await handle.fetch_history()


async def approved_alert_failover(make_harness):
    rb = runbook("llm-inference.yaml")
    world = outage(rb, "us-east-1")
    h = make_harness(world)
    request = FailoverInput(runbook=rb, failed_region="us-east-1", trigger="alert",
                            requested_by="alertmanager receiver drpilot", reason="alert RegionDown (a1b2)")
    async with h.worker():
        handle = await h.start(FailoverWorkflow.run, request)
        await wait_for(handle, lambda p: p.waiting_for == "approval")
        await handle.execute_update(FailoverWorkflow.approve, ApproveInput(by="oncall-alice"))
        result = await handle.result()
    assert result.status == "completed"
    return await handle.fetch_history()


def svg(html: str, kind: str) -> ET.Element:
    found = re.search(rf'<svg [^>]*class="{kind}".*?</svg>', html, re.S)
    assert found, f"no {kind} svg"
    return ET.fromstring(found.group(0))  # well-formed XML, or this raises


async def test_rolled_back_failback_report_shows_the_shift_the_degradation_and_the_return(harness):
    history = await rolled_back_failback(harness)
    html = report.render(history, "html")
    md = report.render(history, "md")

    timeline = svg(html, "timeline")
    labels = [t.text for t in timeline.iter(f"{SVG}text")]
    for phase in ("preflight", "restore", "health-gate", "shift 10%", "shift 25%", "shift 50%", "compensation"):
        assert phase in labels
    assert "shift 75%" not in labels
    # Steps sit under their own phase, also when two phases begin together (restore, sync).
    rows = [(b.depth, b.label) for b in report.build(report.read(history)).bars]
    at = rows.index((0, "sync-artifacts"))
    assert rows[at + 1: at + 3] == [(1, "artifacts.sync us-east-1")] * 2
    assert "bake at 50%" in labels and "probes.analyse us-east-1" in labels  # the steps inside the phases
    # The rolled-back step is drawn in the rolled-back colour.
    bars = {g.find(f"{SVG}text").text: g.find(f"{SVG}rect").get("fill") for g in timeline.iter(f"{SVG}g")}
    assert bars["shift 50%"] == "#ef6c00" and bars["shift 10%"] == "#2e7d32"

    weights = svg(html, "weights")
    lines = {line.find(f"{SVG}title").text: line.get("points") for line in weights.iter(f"{SVG}polyline")}
    assert set(lines) == {"us-east-1", "us-west-2"}
    # us-east-1 climbs 0 -> 10 -> 25 -> 50 and falls back to 0: five distinct heights, ending at 0 %.
    heights = [float(p.split(",")[1]) for p in lines["us-east-1"].split()]
    assert len(set(heights)) == 4 and heights[0] == heights[-1]
    verdicts = [t.text for t in weights.iter(f"{SVG}text") if t.text and t.text.endswith(("✓", "✗"))]
    assert verdicts == ["10% ✓", "25% ✓", "50% ✗"]

    for text in (html, md):
        assert "rolled_back" in text
        assert "us-east-1: 500 requests, error rate 20.00%, p99 180ms" in text  # the analysis numbers at 50 %
        assert "error rate: FAIL 0.200" in md or "0.200" in html  # the failing evidence
        assert "us-east-1 50%, us-west-2 50%" in text and "us-east-1 0%, us-west-2 100%" in text
        assert "drpilot-failback-llm-inference-" in text  # the Velero restore, a change made
        assert "an operator, from the CLI" in text
    assert "| shift 50% | analysis | us-east-1 | **FAIL**" in md


async def test_approved_alert_failover_report_names_trigger_approver_rto_and_changes(harness):
    history = await approved_alert_failover(harness)
    facts = report.read(history)
    sections = report.build(facts)
    trigger = dict(sections.trigger)
    assert trigger["triggered by"] == "an alert, through the Alertmanager webhook (alertmanager receiver drpilot)"
    assert trigger["reason"] == "alert RegionDown (a1b2)"
    assert trigger["approval"].startswith("approved by oncall-alice")
    assert trigger["approve"].startswith("by oncall-alice at ")
    rto = dict(sections.rto)
    assert rto["objective"] == "5m00.0s" and rto["verdict"] == "met"
    changes = [(ch.what, ch.where, ch.before, ch.after) for ch in sections.changes]
    assert ("DNS", "dns-switch", "us-east-1 100%, us-west-2 0%", "us-east-1 0%, us-west-2 100% (INSYNC)") in changes
    assert ("replicas", "us-west-2 ml-serving/inference-service", "1", "6") in changes
    md = report.render(history, "md")
    assert "| **approval** | approved by oncall-alice" in md
    assert "No weighted shift" in report.render(history, "html")


async def test_drpilot_report_writes_both_formats_and_says_one_line_on_bad_input(env, harness, tmp_path):
    history = await rolled_back_failback(harness)
    address = env.client.service_client.config.target_host
    run_id = history.workflow_id

    def cli(*args: str) -> subprocess.CompletedProcess:
        return drpilot("report", *args, DRPILOT_TEMPORAL_ADDRESS=address)

    html = await asyncio.to_thread(cli, run_id, "-o", str(tmp_path / "r.html"))
    assert html.returncode == 0, html.stderr
    assert html.stderr.strip() == f"report: {tmp_path / 'r.html'}"
    assert (tmp_path / "r.html").read_text() == report.render(history, "html")
    md = await asyncio.to_thread(cli, run_id, "--format", "md")
    assert md.returncode == 0 and md.stdout == report.render(history, "md")

    unknown = await asyncio.to_thread(cli, "failover:no-such-runbook")
    assert (unknown.returncode, unknown.stderr.strip()) == (
        1, "error: no run failover:no-such-runbook in namespace default: see `drpilot status` for the runs there")
    unwritable = await asyncio.to_thread(cli, run_id, "-o", str(tmp_path / "missing" / "r.html"))
    assert (unwritable.returncode, unwritable.stderr.strip()) == (
        1, f"error: cannot write {tmp_path / 'missing' / 'r.html'}: No such file or directory")
    bad = await asyncio.to_thread(cli, run_id, "--format", "pdf")
    assert (bad.returncode, bad.stderr.strip()) == (2, "--format: expected html or md, got 'pdf'")


def test_the_html_report_is_self_contained():
    from temporalio.client import WorkflowHistory

    path = ROOT / "tests/workflows/histories/0.2.0/failback_rolled_back.json"
    html = report.render(WorkflowHistory.from_json("failback:llm-inference", path.read_text()), "html")
    assert "<script" not in html
    # Nothing is fetched: no src, no link, no url() — the only http(s) text is the SVG namespace.
    assert not re.search(r"\bsrc=|<link|url\(|@import", html)
    assert set(re.findall(r"https?://[^\s\"'<]+", html)) == {"http://www.w3.org/2000/svg"}


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (make setup)")
async def test_the_html_report_opens_in_headless_chromium_with_its_charts(harness, tmp_path):
    history = await rolled_back_failback(harness)
    page = tmp_path / "report.html"
    page.write_text(report.render(history, "html"))
    dom = await asyncio.to_thread(chromium, page, tmp_path, "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    # The page as chromium parsed it holds both pictures, drawn.
    assert re.search(r'<svg [^>]*class="timeline"', dom.stdout) and re.search(r'<svg [^>]*class="weights"', dom.stdout)
    assert dom.stdout.count("<polyline") == 2
    # No console message (an error in the page) and nothing it failed to load.
    assert not re.search(r"CONSOLE|Failed to load|net::ERR_", dom.stderr), dom.stderr[-2000:]
    shot = tmp_path / "report.png"
    png = await asyncio.to_thread(chromium, page, tmp_path, f"--screenshot={shot}", "--window-size=1100,1400")
    assert png.returncode == 0, png.stderr[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000


@pytest.mark.parametrize("release", ["0.2.0", "0.3.0"])
def test_a_rehearsals_waits_are_on_the_timeline_whether_timers_or_slept_by_the_worker(release):
    # The same failback at speed 100, recorded by 0.2.0 (every wait a timer) and 0.3.0 (the
    # 0.6 s TTLs slept by the worker as local activities, activities/rehearsal.py).
    from temporalio.client import WorkflowHistory

    from drpilot.report import facts

    path = ROOT / f"tests/workflows/histories/{release}/failback_rehearsed.json"
    run = facts.read(WorkflowHistory.from_json("failback:llm-inference", path.read_text()))
    waits = [s for s in run.steps if s.kind == "timer"]
    ttls = [s for s in waits if s.name.startswith("DNS TTL")]
    assert [s.name for s in ttls] == ["DNS TTL 60s"] * 5
    assert all((s.ended - s.started).total_seconds() >= 0.6 for s in ttls)  # 60 s / 100, as long as it took
    assert len([s for s in waits if s.name.startswith("bake at")]) == 5
    assert all(s.outcome == "ok" and s.ended is not None and s.ended >= s.started for s in waits)
    assert all(s.phase.startswith("shift ") for s in waits)


async def test_a_break_glass_override_is_in_the_result_the_report_and_its_messages(harness):
    rb = runbook("llm-inference-arc.yaml")
    request = FailoverInput(runbook=rb, failed_region="us-east-1", override_safety_rules=["at-least-one-on"])
    result, handle = await harness(outage(rb, "us-east-1")).run(FailoverWorkflow.run, request)
    assert result.status == "completed"
    assert result.override_safety_rules == ["at-least-one-on"]
    history = await handle.fetch_history()
    sections = report.build(report.read(history))
    assert dict(sections.trigger)["break-glass"] == "safety rule(s) at-least-one-on overridden (--override-safety-rule)"
    assert any(m.startswith("break-glass: the routing-control switch may override safety rule(s) at-least-one-on")
               for m in sections.messages)


async def test_a_failovers_cold_start_stages_are_rows_of_the_timeline_under_prepare(harness):
    rb = runbook("llm-inference.yaml")
    world = outage(rb, "us-east-1")
    world.cold_start = (2.0, 40.0, 41.0, 60.0, 63.0, 80.0)  # scheduled .. ready, versions ready, warmed
    result, handle = await harness(world).run(FailoverWorkflow.run, FailoverInput(runbook=rb, failed_region="us-east-1"))
    assert result.status == "completed"
    cold = {c.workload: c for c in result.cold_starts}
    assert set(cold) == {"ml-serving/inference-service", "ml-serving/inference-gateway"}
    assert [s for _, s in cold["ml-serving/inference-service"].stages()] == [2.0, 40.0, 41.0, 60.0, 63.0, 80.0]
    history = await handle.fetch_history()
    bars = report.build(report.read(history)).bars
    rows = [(b.depth, b.label, b.seconds) for b in bars]
    at = rows.index((1, "cold start us-west-2 ml-serving/inference-service", 80.0))
    assert rows[at + 1: at + 7] == [
        (2, "scheduled", 2.0), (2, "pulled", 40.0), (2, "started", 41.0), (2, "ready", 60.0),
        (2, "model version ready", 63.0), (2, "warmed", 80.0),
    ]
    prepare = rows.index((0, "prepare", next(b.seconds for b in bars if b.label == "prepare")))
    assert prepare < at < rows.index(next(r for r in rows if r[1] == "warm-up"))
    md = report.render(history, "md")
    assert "&nbsp;&nbsp;&nbsp;&nbsp;model version ready | " in md
    labels = [t.text for t in svg(report.render(history, "html"), "timeline").iter(f"{SVG}text")]
    assert "cold start us-west-2 ml-serving/infer…" in labels and "warmed" in labels

"""`drpilot demo` end to end at high speed, real processes all the way (sandbox, Temporal dev
server, Prometheus, Alertmanager, worker, webhook): the story is checked from the results
the runs returned (REPORTS/runs.json), not from the terminal text; each run's HTML report
opens in headless chromium; nothing it started outlives it, after the end or a Ctrl-C."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
from drpilot_twin.processes import alertmanager_binary, prometheus_binary

from tests.support.chromium import CHROMIUM, chromium
from tests.support.paths import DRPILOT, ROOT
from workflows.types import RunResult

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(alertmanager_binary() is None or prometheus_binary() is None,
                       reason="prometheus / prometheus-alertmanager not installed (make setup)"),
]
SPEED = "200"  # the 10-minute approval timeout is then 3 s: time enough for `drpilot approve`


def left_behind(state: Path) -> list[str]:
    """Processes still running that the demo started: their command line or environment
    names its state directory (the sandbox's children, the worker, the webhook)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            environ = (proc / "environ").read_bytes().decode(errors="replace")
            state_line = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state_line != "Z" and (str(state) in cmdline or f"DRPILOT_SANDBOX_DIR={state}" in environ):
            found.append(f"{proc.name}: {cmdline[:200]}")
    return found


def test_the_demo_tells_the_whole_story(tmp_path):
    state = tmp_path / "demo"
    demo = subprocess.run([str(DRPILOT), "demo", "--speed", SPEED, "--state-dir", str(state)],
                          capture_output=True, text=True, timeout=400, cwd=ROOT, stdin=subprocess.DEVNULL)
    assert demo.returncode == 0, demo.stdout[-4000:] + demo.stderr[-2000:]
    runs = [RunResult.model_validate(r) for r in json.loads((state / "reports" / "runs.json").read_text())]
    assert [(r.action, r.status) for r in runs] == [("failover", "completed"), ("failback", "rolled_back"), ("failback", "completed")]
    failover, rolled_back, home = runs

    # One failover, started by the webhook from Alertmanager's alert, approved by a person.
    assert failover.trigger == "alert" and failover.requested_by.startswith("alertmanager receiver")
    approval = next(p for p in failover.phases if p.name == "approval")
    assert approval.outcome == "ok" and failover.approved_by
    assert failover.final_state.dns == {"us-east-1": 0, "us-west-2": 100}
    assert failover.rto_seconds is not None and failover.objective_rto_seconds == 300
    # Judged on the projection to speed 1, not on every measured second times the speed
    # (which said MISSED for a run that meets its objective at speed 1).
    projection = failover.projection
    assert projection is not None and projection.speed == float(SPEED)
    assert {"pods", "ttl", "health-interval"} <= set(projection.waits), projection
    assert failover.rto_seconds_unscaled == projection.projected_seconds < failover.rto_seconds * float(SPEED)
    assert failover.rto_met, failover.messages

    # The degraded failback went to 50 % and came back by itself, with the failing evidence.
    assert [c.after["us-east-1"] for c in rolled_back.dns_changes] == [10, 25, 50, 0]
    step = next(p for p in rolled_back.phases if p.name == "shift 50%")
    assert step.outcome == "rolled_back"
    assert any(not e.passed and e.check.startswith("us-east-1: error rate") for e in step.evidence)
    assert rolled_back.final_state.dns == {"us-east-1": 0, "us-west-2": 100}

    # The second failback, the fault cleared, went all the way home.
    assert [c.after["us-east-1"] for c in home.dns_changes] == [10, 25, 50, 75, 100]
    assert home.final_state.dns == {"us-east-1": 100, "us-west-2": 0}
    assert home.temporal_run_id != rolled_back.temporal_run_id

    # Each run's report, in both formats, named after its run.
    for run in runs:
        page = state / "reports" / f"{run.action}-{run.runbook}-{run.temporal_run_id[:8]}.html"
        assert page.with_suffix(".md").is_file()
        if CHROMIUM:
            dom = chromium(page, tmp_path, "--dump-dom")
            assert dom.returncode == 0, dom.stderr[-2000:]
            assert re.search(r'<svg [^>]*class="timeline"', dom.stdout) and re.search(r'<svg [^>]*class="weights"', dom.stdout)
            assert not re.search(r"CONSOLE|Failed to load|net::ERR_", dom.stderr), dom.stderr[-2000:]
    assert left_behind(state) == []


def test_ctrl_c_stops_everything_the_demo_started(tmp_path):
    state = tmp_path / "demo"
    # Its own process group, signalled as a terminal's Ctrl-C signals the foreground group.
    demo = subprocess.Popen([str(DRPILOT), "demo", "--speed", SPEED, "--state-dir", str(state)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    seen = []
    try:
        assert demo.stdout is not None
        for line in demo.stdout:
            seen.append(line)
            if "waiting for approval" in line:  # mid-failover: everything is up and a run is going
                break
        else:
            pytest.fail("the demo ended before its failover waited for approval:\n" + "".join(seen[-40:]))
        assert left_behind(state), "the demo's processes should be running now"
        os.killpg(demo.pid, signal.SIGINT)
        rest = demo.communicate(timeout=90)[0]
    finally:
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGKILL)
            demo.wait()
    assert demo.returncode == 130, "".join(seen[-20:]) + rest[-2000:]
    assert "demo: stopped the webhook, the worker and the sandbox" in rest
    deadline = time.monotonic() + 15
    while left_behind(state) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert left_behind(state) == []

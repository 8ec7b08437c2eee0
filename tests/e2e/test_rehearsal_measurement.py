"""A rehearsal judges Prometheus checks as a real run would: a failback started right after a
rolled-back one passes its health gate at speed 60, although the rolled-back attempt's
errors are still inside the check's range when the gate begins (issue: measurement windows
are not waits). The twin's real Prometheus, a real worker and the CLI, end to end."""

from __future__ import annotations

import json
import os
import signal
import subprocess

import pytest
import yaml
from drpilot_twin.faults import ErrorRamp
from drpilot_twin.processes import prometheus_binary

from drpilot.domain.runbook import Runbook
from tests.support.paths import DRPILOT, RUNBOOKS

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(prometheus_binary() is None, reason="Debian's prometheus is not installed"),
]
HOME = "us-central1"
# The example's error ratio over a 10 s range (1 m in production), scraped every second.
ERROR_RATIO = (
    '(sum(rate(inference_requests_total{region="{region}",code=~"5.."}[10s])) or vector(0))'
    ' / sum(rate(inference_requests_total{region="{region}"}[10s]))'
)


def runbook() -> Runbook:
    data = yaml.safe_load((RUNBOOKS / "llm-inference-clouddns.yaml").read_text())
    spec = data["spec"]
    spec["health"]["prometheus"] = [{"name": "error-rate", "query": ERROR_RATIO, "max": 0.01}]
    # At speed 60 the gate's 60 s timeout is 1 s: far shorter than the 10 s range.
    spec["health"].update(timeout="60s", interval="5s", consecutive=2, scrape_interval="1s")
    spec["traffic_shift"].update(steps=[50, 100], bake="1m")
    spec["approvals"] = {"failover": "never", "failback": "never"}
    return Runbook.model_validate(data)


def test_a_failback_right_after_a_rolled_back_one_passes_its_gate_at_speed_60(twin_factory, tmp_path):
    rb = runbook()
    file = tmp_path / "runbook.yaml"
    file.write_text(yaml.safe_dump(rb.model_dump(mode="json", exclude_none=True)))
    twin = twin_factory(rb, speed=60, temporal=True, prometheus=True, traffic_rate=40)
    env = {**os.environ, **twin.env()}
    log = (tmp_path / "worker.log").open("wb")
    worker = subprocess.Popen([str(DRPILOT), "worker"], env=env, stdout=subprocess.DEVNULL, stderr=log, start_new_session=True)

    def run(*args: str) -> dict:
        done = subprocess.run([str(DRPILOT), *args, str(file), "--yes", "--wait", "--json"], env=env,
                              capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=300)
        assert done.stdout, done.stderr
        return json.loads(done.stdout)

    try:
        assert run("failover", "--from", HOME)["status"] == "completed"
        # Errors start when the home region gets traffic again: the shift's first step rolls back.
        twin.board.update(error_ramp={HOME: ErrorRamp(at_weight=1, error_rate=0.5)})
        first = run("failback", "--to", HOME)
        assert first["status"] == "rolled_back", first["messages"]
        twin.board.update(error_ramp={})
        # At once: the errors are still in the 10 s range when this gate begins.
        second = run("failback", "--to", HOME)
        assert second["status"] == "completed", second["messages"]
        gate = next(p for p in second["phases"] if p["name"] == "health-gate")
        assert gate["outcome"] == "ok", gate
        assert twin.weights() == rb.normal_weights()
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(30)
        log.close()

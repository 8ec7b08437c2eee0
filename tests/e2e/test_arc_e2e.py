"""End to end, the story of issue 20: us-east-1 is dark, Route53's control plane (served from
us-east-1) does not answer and three of the ARC cluster's five endpoints fail. A runbook
switched by routing controls still fails over (ARC's data plane only) and fails back once
the control plane answers, holding until then; the same environment switched by weights
stops before changing anything, with one line saying what to do by hand.

Real processes all the way: `drpilot sandbox up`, `drpilot worker`, `drpilot failover` /
`failback` / `status`; the twin read back through its control API and plain boto3."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.e2e.test_cli_e2e import SPEED, drpilot, route53_weights, why
from tests.support.paths import ARC_RUNBOOK, DRPILOT, ROUTE53_RUNBOOK

pytestmark = pytest.mark.e2e
HELD_WITHIN_SECONDS = 120.0  # the failback reaches its first shift step and holds well within this


class Worker:
    def __init__(self, env: dict[str, str], log: Path):
        self.log = log
        with log.open("w") as out:  # a file, not a pipe nobody reads
            self.proc = subprocess.Popen([str(DRPILOT), "worker"], env=env, stdout=subprocess.DEVNULL, stderr=out,
                                         text=True, start_new_session=True)

    def stop(self) -> None:
        os.killpg(self.proc.pid, signal.SIGTERM)
        self.proc.wait(timeout=60)


@contextlib.contextmanager
def us_east_1_outage(sandbox_process, runbook: Path, tmp_path: Path):
    """A sandbox of `runbook` and a worker; us-east-1 dark with Route53's control plane, and
    three of the ARC cluster's five endpoints failing."""
    sandbox = sandbox_process(runbook, "--speed", SPEED)
    env = {**os.environ, **sandbox.env()}
    worker = Worker(env, tmp_path / "worker.stderr")
    try:
        sandbox.cli("fault", "set", "region_down=us-east-1", "route53_control_plane_down=1", "arc_endpoints_down=3")
        yield sandbox, env, worker
    finally:
        worker.stop()


def status(sandbox) -> dict:
    return json.loads(sandbox.cli("status", "--json").stdout)


def test_routing_controls_fail_over_without_route53s_control_plane_and_fail_back_once_it_answers(
    sandbox_process, tmp_path
):
    with us_east_1_outage(sandbox_process, ARC_RUNBOOK, tmp_path) as (sandbox, env, worker):
        failover = drpilot(env, "failover", str(ARC_RUNBOOK), "--from", "us-east-1", "--yes", "--wait", "--json")
        assert failover.returncode == 0, why(failover, worker.log)
        result = json.loads(failover.stdout)
        assert result["status"] == "completed"
        assert result["final_state"]["dns"] == {"us-east-1": 0, "us-west-2": 100}
        assert [c["status"] for c in result["dns_changes"]] == ["switched"]
        twin = status(sandbox)
        # Traffic goes to the standby: what resolvers are answered, and the controls that did it.
        assert twin["weights"] == {"us-east-1": 0, "us-west-2": 100}
        assert twin["routing_controls"] == {"us-east-1": "Off", "us-west-2": "On"}
        assert route53_weights(env) == {"us-east-1": 100, "us-west-2": 0}  # no record was changed

        # us-east-1 is back; Route53's control plane still is not: the failback holds.
        sandbox.cli("fault", "set", "region_down=")
        with (tmp_path / "failback.out").open("w") as out:
            failback = subprocess.Popen(
                [str(DRPILOT), "failback", str(ARC_RUNBOOK), "--to", "us-east-1", "--yes", "--wait", "--json"],
                env=env, stdout=out, stderr=subprocess.PIPE, text=True,
            )
        progress = held(env, "failback:llm-inference-arc", failback)
        assert progress["waiting_for"] == "route53 control plane"
        assert "ServiceUnavailable" in progress["waiting_cause"]
        assert status(sandbox)["weights"] == {"us-east-1": 0, "us-west-2": 100}  # nothing half-moved
        sandbox.cli("fault", "clear")
        _, errors = failback.communicate(timeout=240)
        done = subprocess.CompletedProcess(failback.args, failback.returncode,
                                           (tmp_path / "failback.out").read_text(), errors)
        assert done.returncode == 0, why(done, worker.log)
        back = json.loads(done.stdout)
        assert back["status"] == "completed"
        assert [w["us-east-1"] for w in back["weights_applied"]] == [10, 25, 50, 75, 100]
        assert any("Route53's control plane does not answer" in m for m in back["messages"])
        twin = status(sandbox)
        assert twin["weights"] == {"us-east-1": 100, "us-west-2": 0}
        assert twin["routing_controls"] == {"us-east-1": "On", "us-west-2": "On"}  # the normal layout
        assert route53_weights(env) == {"us-east-1": 100, "us-west-2": 0}


def held(env: dict[str, str], run_id: str, running: subprocess.Popen) -> dict:
    """The run's progress once it holds for something; ordered by the run's own state."""
    deadline = time.monotonic() + HELD_WITHIN_SECONDS
    while time.monotonic() < deadline:
        assert running.poll() is None, f"the run ended instead of holding: {running.stderr.read() if running.stderr else ''}"
        shown = drpilot(env, "status", run_id, "--json", timeout=60)
        if shown.returncode == 0:
            progress = json.loads(shown.stdout)
            if progress.get("waiting_for"):
                return progress
        time.sleep(0.2)  # polling the run's state, not waiting for time to pass
    raise AssertionError(f"{run_id} never held within {HELD_WITHIN_SECONDS:g}s")


def test_a_switch_by_weights_stops_before_changing_anything_when_route53s_control_plane_is_down(
    sandbox_process, tmp_path
):
    with us_east_1_outage(sandbox_process, ROUTE53_RUNBOOK, tmp_path) as (sandbox, env, worker):
        before = status(sandbox)
        failover = drpilot(env, "failover", str(ROUTE53_RUNBOOK), "--from", "us-east-1", "--yes", "--wait", "--json")
        assert failover.returncode != 0, why(failover, worker.log)
        result = json.loads(failover.stdout)
        assert result["status"] == "failed"
        (preflight,) = [p for p in result["phases"] if p["outcome"] == "failed"]
        assert preflight["name"] == "preflight"
        line = preflight["detail"]
        assert "\n" not in line
        assert "Route53's control plane (ChangeResourceRecordSets, GetChange; served from us-east-1) does not answer" in line
        assert "aws route53 change-resource-record-sets --hosted-zone-id" in line
        assert '"SetIdentifier":"us-east-1","Weight":0' in line and '"SetIdentifier":"us-west-2","Weight":100' in line
        assert result["dns_changes"] == []
        after = status(sandbox)
        assert after["weights"] == before["weights"] == {"us-east-1": 100, "us-west-2": 0}
        assert after["regions"]["us-west-2"]["deployments"] == before["regions"]["us-west-2"]["deployments"]

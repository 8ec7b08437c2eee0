"""The run commands' user mistakes and missing infrastructure: one sentence, no traceback."""

from __future__ import annotations

from tests.support.commands import drpilot
from tests.support.paths import RUNBOOKS

RUNBOOK = str(RUNBOOKS / "llm-inference.yaml")


def test_unreachable_temporal_is_one_sentence_saying_how_to_start_one():
    for args in (("status",), ("failover", RUNBOOK, "--from", "us-east-1", "--yes"), ("approve", "failover:x")):
        result = drpilot(*args, DRPILOT_TEMPORAL_ADDRESS="127.0.0.1:1")
        assert result.returncode == 1
        assert result.stderr.strip() == (
            "error: cannot reach Temporal at 127.0.0.1:1 (namespace default): connection refused. "
            "Start one with `drpilot sandbox up --runbook FILE` (then `source DIR/env`) or "
            "`temporal server start-dev`, or set DRPILOT_TEMPORAL_ADDRESS."
        )


def test_no_terminal_and_no_yes_refuses():
    result = drpilot("failover", RUNBOOK, "--from", "us-east-1")
    assert result.returncode == 2
    assert result.stderr.strip() == "refusing to fail over llm-inference away from us-east-1 without confirmation: pass --yes"


def test_unknown_region_and_strategy():
    result = drpilot("failover", RUNBOOK, "--from", "eu-west-1", "--yes")
    assert (result.returncode, result.stderr.strip()) == (
        2, "unknown region 'eu-west-1'; llm-inference has us-east-1, us-west-2")
    result = drpilot("failover", RUNBOOK, "--from", "us-east-1", "--strategy", "fast", "--yes")
    assert (result.returncode, result.stderr.strip()) == (
        2, "--strategy: expected graceful or ungraceful, got 'fast'")
    result = drpilot("failback", RUNBOOK, "--to", "mars-1", "--yes")
    assert (result.returncode, result.stderr.strip()) == (
        2, "unknown region 'mars-1'; llm-inference has us-east-1, us-west-2")


def test_bad_speed_setting_is_named():
    result = drpilot("status", DRPILOT_SPEED="warp")
    assert (result.returncode, result.stderr.strip()) == (2, "error: DRPILOT_SPEED='warp': expected a number >= 1")


def test_speed_above_1_outside_a_sandbox_is_refused_naming_what_to_unset():
    env = {"DRPILOT_SANDBOX": "", "DRPILOT_TEMPORAL_ADDRESS": "127.0.0.1:1"}
    result = drpilot("status", DRPILOT_SPEED="60", **env)
    assert result.returncode == 2
    assert result.stderr.strip().startswith("error: DRPILOT_SPEED='60': a speed above 1 shortens")
    assert result.stderr.strip().endswith("unset DRPILOT_SPEED to run at real time")
    result = drpilot("failback", RUNBOOK, "--to", "us-east-1", "--yes", "--speed", "60", DRPILOT_SPEED="1", **env)
    assert result.returncode == 2
    assert result.stderr.strip().startswith("error: --speed 60: a speed above 1 shortens")
    assert result.stderr.strip().endswith("drop --speed to run at real time")
    assert len(result.stderr.strip().splitlines()) == 1


def test_report_dir_is_checked_before_the_run_starts(tmp_path):
    env = {"DRPILOT_TEMPORAL_ADDRESS": "127.0.0.1:1"}  # never reached: the check comes first
    result = drpilot("failback", RUNBOOK, "--to", "us-east-1", "--yes", "--report", str(tmp_path), **env)
    assert (result.returncode, result.stderr.strip()) == (2, "--report DIR writes the report when the run ends: add --wait")
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = drpilot("failover", RUNBOOK, "--from", "us-east-1", "--yes", "--wait", "--report", str(blocker / "reports"), **env)
    assert (result.returncode, result.stderr.strip()) == (2, f"error: --report {blocker / 'reports'}: Not a directory")

"""`drpilot runbook ...` and `drpilot --version` as a user runs them: a real process."""

from __future__ import annotations

import json
import subprocess
import sys

from drpilot import __version__
from drpilot.cli.runbook import runbook_schema
from drpilot.domain.loader import load_runbook
from tests.support.commands import assert_whole
from tests.support.paths import ROOT, RUNBOOKS


def drpilot(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "drpilot", *args], capture_output=True, text=True, cwd=ROOT, timeout=60
    )


def test_validate_examples_exit_zero(runbook_paths):
    result = drpilot("runbook", "validate", *map(str, runbook_paths))
    assert result.returncode == 0, result.stderr
    assert result.stdout.count(": ok") == len(runbook_paths)


def test_validate_reports_every_problem_on_stderr_and_exits_one(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text((RUNBOOKS / "llm-inference.yaml").read_text().replace("ttl: 60", "ttl: sixty").replace("rto: 5m", "rto: fast"))
    result = drpilot("runbook", "validate", str(RUNBOOKS / "llm-inference.yaml"), str(bad))
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert lines == [
        f'{bad}:12:10: spec.objectives.rto: expected a duration such as 90s, 5m or 1h30m, got "fast"',
        f'{bad}:33:14: spec.dns.records[0].ttl: expected a positive integer, got "sixty"',
        "1 of 2 runbook(s) invalid",
    ]
    assert "Traceback" not in result.stderr


def test_schema_matches_committed_file():
    committed = json.loads((RUNBOOKS / "schema.json").read_text())
    assert committed == runbook_schema(), "run: drpilot runbook schema > runbooks/schema.json"
    result = drpilot("runbook", "schema")
    assert json.loads(result.stdout) == committed


def test_show_summarises(runbook_paths):
    result = drpilot("runbook", "show", str(RUNBOOKS / "llm-inference-clouddns.yaml"))
    assert result.returncode == 0, result.stderr
    for text in ("llm-inference-gcp", "us-central1", "europe-west4", "inference.example.dev.", "vllm-llama", "RTO 3m"):
        assert text in result.stdout
    # Into a pipe (no terminal width), every cell whole: the endpoints and contexts are long.
    rb = load_runbook(RUNBOOKS / "llm-inference-clouddns.yaml")
    assert_whole(result.stdout, *(r.endpoint for r in rb.spec.regions.values()), *(r.kube.context for r in rb.spec.regions.values()))


def test_show_invalid_runbook_is_one_clear_error(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: drpilot/v2\n")
    result = drpilot("runbook", "show", str(bad))
    assert result.returncode == 1
    assert f"{bad}:1:13: apiVersion: expected one of 'drpilot/v1', got \"drpilot/v2\"" in result.stderr.splitlines()
    assert "Traceback" not in result.stderr


def test_version_and_help():
    assert drpilot("--version").stdout.strip() == f"drpilot {__version__}"
    help_text = drpilot("runbook", "--help").stdout
    for command in ("validate", "schema", "show"):
        assert command in help_text


def test_readme_field_reference_is_current():
    from drpilot.domain.reference import BEGIN, END, render

    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index(BEGIN) : readme.index(END) + len(END)]
    assert section == render(), "run: python -m drpilot.domain.reference"


def test_a_problem_on_line_100_prints_its_line_number(tmp_path):
    # rich's emoji codes turned "FILE:100:10" into "FILE💯10" (found by bench/bad_input.py).
    bad = tmp_path / "bad.yaml"
    bad.write_text("#\n" * 88 + (RUNBOOKS / "llm-inference.yaml").read_text().replace("rto: 5m", "rto: fast"))
    result = drpilot("runbook", "validate", str(bad))
    assert result.returncode == 1
    assert result.stderr.splitlines()[0] == (
        f'{bad}:100:10: spec.objectives.rto: expected a duration such as 90s, 5m or 1h30m, got "fast"'
    )

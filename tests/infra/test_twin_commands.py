"""`drpilot sandbox ...` and `drpilot demo` belong to the twin: where it is installed they are
its commands; where it is not (a production install), each says in one line how to install
it and exits 2, without a traceback."""

from __future__ import annotations

import subprocess
import sys

import pytest

from drpilot.cli.twin import INSTALL
from tests.support.paths import ROOT
from tests.support.production import without_twin


def drpilot(*args: str, prelude: str = "") -> subprocess.CompletedProcess:
    script = prelude + "\nfrom drpilot.cli.main import run\nrun('drpilot')\n"
    return subprocess.run(
        [sys.executable, "-c", script, *args], capture_output=True, text=True, cwd=ROOT, timeout=120
    )


@pytest.mark.parametrize(
    "args",
    [
        ("sandbox", "up", "--runbook", "runbooks/llm-inference.yaml"),
        ("sandbox", "status"),
        ("sandbox", "--help"),
        ("sandbox",),
        ("demo",),
        ("demo", "--help"),
    ],
    ids=" ".join,
)
def test_without_the_twin_its_commands_say_in_one_line_how_to_install_it(args):
    result = drpilot(*args, prelude=without_twin())
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"error: `drpilot {args[0]}` needs the sandbox twin, which is not installed here: {INSTALL}"
    ]


def test_without_the_twin_the_help_still_lists_its_commands():
    result = drpilot("--help", prelude=without_twin())
    assert result.returncode == 0, result.stderr
    assert "sandbox" in result.stdout and "demo" in result.stdout and "(needs the twin)" in result.stdout


@pytest.mark.parametrize(
    ("command", "offers"),
    [("sandbox", ["up", "status", "fault", "down"]), ("demo", ["--speed"])],
)
def test_with_the_twin_its_commands_are_its_own(command, offers):
    result = drpilot(command, "--help")
    assert result.returncode == 0, result.stderr
    assert "needs the twin" not in result.stdout
    for word in offers:
        assert word in result.stdout, result.stdout

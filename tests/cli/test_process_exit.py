"""How drpilot processes end (drpilot/cli/process_exit.py): the exit code and output survive an
exit that skips interpreter finalization, which temporalio's client threads can crash."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from importlib.metadata import entry_points

import pytest


def _run(body: str) -> subprocess.CompletedProcess:
    script = textwrap.dedent("""
        import atexit, sys
        from drpilot.cli.process_exit import run_and_exit
        atexit.register(lambda: print("atexit ran", file=sys.stderr))
        def main():
            print("partial line without newline", end="")
            {body}
        run_and_exit(main)
    """).format(body=body)
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ("pass", 0),
        ("sys.exit(None)", 0),
        ("sys.exit(3)", 3),
        ("sys.exit('fatal: told so')", 1),
        ("raise KeyboardInterrupt", 130),
        ("raise ValueError('a bug')", 1),
    ],
)
def test_the_exit_code_output_and_atexit_handlers_survive(body: str, code: int) -> None:
    done = _run(body)
    assert done.returncode == code, done.stderr
    assert done.stdout == "partial line without newline"
    assert "atexit ran" in done.stderr
    if "fatal" in body:
        assert "fatal: told so" in done.stderr
    if "ValueError" in body:
        assert "Traceback" in done.stderr and "ValueError: a bug" in done.stderr


def test_the_console_script_ends_through_run_and_exit() -> None:
    (script,) = [e for e in entry_points(group="console_scripts") if e.name == "drpilot"]
    assert script.value == "drpilot.cli.main:run"

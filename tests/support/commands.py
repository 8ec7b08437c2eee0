"""The drpilot command line run as a user runs it: a child process, its output captured."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.support.paths import DRPILOT, ROOT, ROUTE53_RUNBOOK


def drpilot(*args: str, **env: str) -> subprocess.CompletedProcess:
    """`python -m drpilot ARGS` from the repository, `env` added to this process's environment."""
    return subprocess.run([sys.executable, "-m", "drpilot", *args], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, **env}, stdin=subprocess.DEVNULL, timeout=60)


def plan(env, *args, runbook: Path = ROUTE53_RUNBOOK):
    """`drpilot runbook plan` of llm-inference.yaml (or `runbook`), in exactly the environment `env`."""
    return subprocess.run([str(DRPILOT), "runbook", "plan", str(runbook), *args],
                          env=env, capture_output=True, text=True, timeout=60)


def assert_whole(output: str, *cells: str) -> None:
    """A table a command printed into a pipe has every cell whole: none cut short (`pref…`),
    and each of `cells` on one line (not folded onto the next)."""
    lines = output.splitlines()
    assert "…" not in output, output
    for cell in cells:
        assert any(cell in line for line in lines), f"{cell!r} is not whole on one line:\n{output}"

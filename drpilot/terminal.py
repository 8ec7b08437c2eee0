"""What the command lines (drpilot/cli.py, drpilot/sandbox/cli.py) share: the stderr console
and the one way a runbook is loaded at a front door."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from drpilot.loader import RunbookError, load_runbook
from drpilot.runbook import Runbook

err = Console(stderr=True, highlight=False, soft_wrap=True)


def load_or_exit(path: Path) -> Runbook:
    """A runbook that loads, or every problem on stderr (FILE:LINE:COL: field: message) and
    exit 1, never a traceback."""
    try:
        return load_runbook(path)
    except RunbookError as exc:
        for problem in exc.problems:
            err.print(str(problem), markup=False)
        raise typer.Exit(1) from None

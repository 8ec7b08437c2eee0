"""What the command lines (drpilot/cli/main.py, twin/drpilot_twin/cli.py) share: the stderr console
and the one way a runbook is loaded at a front door."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import typer
from rich.console import Console

from drpilot.domain.loader import DocumentError, load_runbook

T = TypeVar("T")

# emoji=False: rich would print "FILE:100:3" as "FILE💯3" (":100:" is an emoji code).
err = Console(stderr=True, highlight=False, soft_wrap=True, emoji=False)


def load_or_exit(path: Path, load: Callable[[Path], T] = load_runbook) -> T:
    """A runbook (or another document `load` reads) that loads, or every problem on stderr
    (FILE:LINE:COL: field: message) and exit 1, never a traceback."""
    try:
        return load(path)
    except DocumentError as exc:
        for problem in exc.problems:
            err.print(str(problem), markup=False)
        raise typer.Exit(1) from None


def validate_files(files: list[Path], load: Callable[[Path], object], noun: str) -> None:
    """`... validate FILE...`: "FILE: ok" or every problem per file; exit 1 if any failed."""
    failed = 0
    for path in files:
        try:
            load(path)
        except DocumentError as exc:
            failed += 1
            for problem in exc.problems:
                err.print(str(problem), markup=False)
            continue
        typer.echo(f"{path}: ok")
    if failed:
        err.print(f"{failed} of {len(files)} {noun}(s) invalid", markup=False)
        raise typer.Exit(1)


def document_commands(
    app: typer.Typer, *, load: Callable[[Path], object], schema: Callable[[], dict], noun: str,
    files_help: str, validate_help: str, schema_help: str,
) -> None:
    """`validate FILE...` and `schema` for one kind of YAML document (runbooks, webhook rules):
    the same checking, the same output, one place."""

    def validate(files: list[Path] = typer.Argument(..., help=files_help, metavar="FILE...")) -> None:
        validate_files(files, load, noun)

    def print_schema() -> None:
        typer.echo(json.dumps(schema(), indent=2))

    app.command("validate", help=validate_help)(validate)
    app.command("schema", help=schema_help)(print_schema)

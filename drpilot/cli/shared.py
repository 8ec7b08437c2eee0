"""What the command groups share: the output console and its tables, settings, the rehearsal
speed, running a front-door coroutine with one-line errors, confirmation, and writing run
reports."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table

from drpilot.cli.terminal import err

out = Console(soft_wrap=True)


def print_table(table: Table) -> None:
    """A table, every cell whole. On a terminal rich folds cells to its width; into a pipe or
    a file (`> history.txt`, CI, `| less`) there is no width, and rich would assume 80
    columns and cut cells to `pref…`: there it prints at the table's natural width."""
    if out.is_terminal:
        out.print(table)
        return
    terminal_width = out.width
    out.width = Measurement.get(out, out.options.update_width(1_000_000), table).maximum
    try:
        out.print(table)
    finally:
        out.width = terminal_width


def settings_or_exit():
    from drpilot.domain.settings import SettingsError, load_settings

    try:
        return load_settings()
    except SettingsError as exc:
        err.print(f"error: {exc}", markup=False)
        raise typer.Exit(2) from None


def rehearsal_speed(option: float | None) -> float:
    """The run's rehearsal speed: --speed, else DRPILOT_SPEED; above 1 only in a sandbox."""
    from drpilot.domain.settings import SettingsError, check_speed

    settings = settings_or_exit()
    if option is None:
        return settings.speed
    try:
        check_speed(option, settings.sandbox, f"--speed {option:g}")
    except SettingsError as exc:
        err.print(f"error: {exc}", markup=False)
        raise typer.Exit(2) from None
    return option


def run_async(coroutine_factory):
    """Run an async front-door action; Temporal and run errors become one line, exit 1."""
    import asyncio

    from drpilot.frontdoor.runs import RunError
    from drpilot.frontdoor.temporal import TemporalUnavailable

    try:
        return asyncio.run(coroutine_factory())
    except (TemporalUnavailable, RunError) as exc:
        err.print(f"error: {exc}", markup=False)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        err.print("interrupted: the run goes on in Temporal; see `drpilot status`", markup=False)
        raise typer.Exit(130) from None


def confirm(yes: bool, what: str) -> None:
    import sys

    if yes:
        return
    if not sys.stdin.isatty():
        err.print(f"refusing to {what} without confirmation: pass --yes", markup=False)
        raise typer.Exit(2)
    if not typer.confirm(f"{what}?"):
        raise typer.Exit(1)


REPORT_FORMATS = ("html", "md")


def report_dir_or_exit(directory: Path | None, wait: bool) -> Path | None:
    """Check --report DIR before the run starts: a report that cannot be written is known
    before anything changes, not after the failover."""
    import os

    if directory is None:
        return None
    if not wait:
        err.print("--report DIR writes the report when the run ends: add --wait", markup=False)
        raise typer.Exit(2)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        err.print(f"error: --report {directory}: {exc.strerror or exc}", markup=False)
        raise typer.Exit(2) from None
    if not os.access(directory, os.W_OK | os.X_OK):
        err.print(f"error: --report {directory}: not writable", markup=False)
        raise typer.Exit(2)
    return directory


def write_report(path: Path, text: str) -> None:
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        err.print(f"error: cannot write {path}: {exc.strerror or exc}", markup=False)
        raise typer.Exit(1) from None


async def write_reports(client, run_id: str, temporal_run_id: str, directory: Path) -> list[Path]:
    """The finished run's report in every format, named after the run (drpilot.report.file_name)."""
    from drpilot import report
    from drpilot.frontdoor import runs

    history = await runs.history(client, run_id, temporal_run_id or None)
    facts = report.read(history)
    written = []
    for format in REPORT_FORMATS:
        path = directory / report.file_name(facts, format)
        write_report(path, report.FORMATS[format](report.build(facts)))
        written.append(path)
    return written


def serve_or_exit(app, host: str, port: int, **options) -> None:
    """Serve `app` on host:port with uvicorn until stopped (logs are ours: no uvicorn log
    config, no access log); a port that cannot be bound is one line, not a traceback."""
    import uvicorn

    config = uvicorn.Config(app, host=host, port=port, log_config=None, access_log=False, lifespan="off", **options)
    server = uvicorn.Server(config)
    try:
        server.run()
    except OSError as exc:
        err.print(f"error: cannot listen on {host}:{port}: {exc.strerror or exc}", markup=False)
        raise typer.Exit(1) from None
    if not server.started:
        raise typer.Exit(1)

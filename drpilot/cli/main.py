"""The on-call command line: `drpilot ...`. Every user mistake is one clear message and a
non-zero exit, never a traceback."""

from __future__ import annotations

from typing import NoReturn

import typer

from drpilot import __version__
from drpilot.cli import runs
from drpilot.cli.artifacts import app as artifacts_app
from drpilot.cli.console import console
from drpilot.cli.drill import app as drill_app
from drpilot.cli.evacuate import evacuate
from drpilot.cli.process_exit import run_and_exit
from drpilot.cli.readiness import readiness
from drpilot.cli.runbook import app as runbook_app
from drpilot.cli.shared import out, settings_or_exit
from drpilot.cli.terminal import err
from drpilot.cli.twin import add_twin_commands
from drpilot.cli.webhook import app as webhook_app

app = typer.Typer(
    name="drpilot",
    help="Disaster-recovery orchestration for ML / LLM inference: failover, failback, drills.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(runbook_app, name="runbook")
app.add_typer(artifacts_app, name="artifacts")
app.add_typer(webhook_app, name="webhook")
app.add_typer(drill_app, name="drill")
app.command("readiness")(readiness)
app.command("evacuate")(evacuate)
app.command("console")(console)
for command in (runs.failover, runs.failback, runs.report, runs.status, runs.approve, runs.abort, runs.pause, runs.resume):
    app.command()(command)
add_twin_commands(app)


def _version(value: bool) -> None:
    if value:
        out.print(f"drpilot {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
) -> None:
    """drpilot moves serving between regions safely: see `drpilot COMMAND --help`."""


def run(prog_name: str | None = None) -> NoReturn:
    """The `drpilot` console script: the app, then an exit that skips interpreter
    finalization, which temporalio's client threads can crash (drpilot/cli/process_exit.py)."""
    run_and_exit(lambda: app(prog_name=prog_name))


@app.command()
def worker() -> None:
    """Run a worker: executes failover / failback runs from the task queue until SIGTERM."""
    import asyncio

    from drpilot.frontdoor.health import ListenError
    from drpilot.frontdoor.logs import configure
    from drpilot.frontdoor.temporal import TemporalUnavailable
    from drpilot.frontdoor.worker import run_worker

    configure()
    try:
        asyncio.run(run_worker(settings_or_exit()))
    except (TemporalUnavailable, ListenError) as exc:
        err.print(f"error: {exc}", markup=False)
        raise typer.Exit(1) from None

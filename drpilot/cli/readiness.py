"""`drpilot readiness ...`: would a failover and a failback work right now? Read-only.

    drpilot readiness FILE                      check now, print the verdict per check
    drpilot readiness schedule FILE --every 30m a Temporal Schedule (readiness:NAME)
    drpilot readiness last NAME                 the last scheduled verdict
    drpilot readiness delete NAME               remove the schedule
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import typer
from rich.table import Table

from drpilot.cli.shared import out, print_table
from drpilot.cli.terminal import err, load_or_exit

VERBS = ("schedule", "last", "delete")
USAGE = "expected FILE, `schedule FILE --every 30m`, `last NAME` or `delete NAME`"


def _print(result, as_json: bool) -> None:
    if as_json:
        typer.echo(result.model_dump_json(indent=2))
        return
    table = Table("check", "verdict", "detail", title=f"readiness of {result.runbook} at {result.checked_at:%Y-%m-%d %H:%M:%SZ}")
    for check in result.checks:
        table.add_row(check.name, "ready" if check.ready else "NOT READY", check.detail)
    print_table(table)
    failing = [ch.name for ch in result.checks if not ch.ready]
    out.print(f"{result.runbook}: " + ("ready" if result.ready else f"NOT READY ({', '.join(failing)})"), markup=False)


def readiness(
    args: list[str] = typer.Argument(..., help="FILE, or schedule FILE, last NAME, delete NAME.", metavar="[VERB] FILE|NAME"),
    every: str = typer.Option(None, "--every", help="schedule: how often, e.g. 30m."),
    as_json: bool = typer.Option(False, "--json", help="Print the verdict as JSON."),
) -> None:
    """Run the read-only preflight of failover and failback now (or on a schedule): clusters,
    workloads, artifacts, DNS, RPO, Velero backup. Exit 1 when not ready."""
    from drpilot.cli.shared import run_async, settings_or_exit
    from drpilot.domain.durations import parse_duration
    from drpilot.frontdoor import readiness as front
    from drpilot.frontdoor.temporal import connect

    verb = args[0] if len(args) == 2 and args[0] in VERBS else None
    if (verb is None and len(args) != 1) or (verb is None and args[0] in VERBS):
        err.print(f"readiness: {USAGE}", markup=False)
        raise typer.Exit(2)
    target = args[-1]
    settings = settings_or_exit()
    if verb == "schedule":
        rb = load_or_exit(Path(target))
        try:
            interval = parse_duration(every or "")
        except ValueError as exc:
            err.print(f"--every: {exc}", markup=False)
            raise typer.Exit(2) from None
        if interval < timedelta(minutes=1):
            err.print(f"--every {every}: at least 1m (each check reads every region and artifact)", markup=False)
            raise typer.Exit(2)

        async def go_schedule():
            return await front.schedule(await connect(settings.temporal), settings, rb, interval)

        done = run_async(go_schedule)
        out.print(f"{front.schedule_id(rb.name)}: {done}; every {every}, a firing skipped while the last runs; "
                  f"see the verdict with `drpilot readiness last {rb.name}`", markup=False)
        return
    if verb == "delete":
        async def go_delete():
            await front.delete(await connect(settings.temporal), target)

        run_async(go_delete)
        out.print(f"{front.schedule_id(target)}: deleted", markup=False)
        return
    if verb == "last":
        async def go_last():
            return await front.latest(await connect(settings.temporal), target)

        result = run_async(go_last)
        if result is None:
            out.print(f"{front.schedule_id(target)} has not finished a check yet", markup=False)
            return
    else:
        rb = load_or_exit(Path(target))

        async def go_now():
            return await front.check_now(await connect(settings.temporal), settings, rb)

        result = run_async(go_now)
    _print(result, as_json)
    if not result.ready:
        raise typer.Exit(1)

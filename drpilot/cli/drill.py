"""`drpilot drill ...`: game-day drills now or on a schedule, and their history.

A drill fails over away from a region (the primary by default), soaks on the standby, and
fails back, as child runs of the real procedures (workflows/drill.py). `rehearsal` (the
default) runs against a sandbox twin and is refused anywhere else; `live` runs against the
real environment with the runbook's approvals.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import typer
from rich.table import Table

from drpilot.cli.shared import out, print_table
from drpilot.cli.terminal import err, load_or_exit

app = typer.Typer(help="Game-day drills: fail over, soak, fail back; now or on a schedule; their evidence.", no_args_is_help=True)


def _request(file: Path, from_region: str | None, mode: str, speed: float | None):
    """The drill's input (drpilot/frontdoor/drills.py `drill_input`, as the console starts
    one), or one line and exit 2."""
    from drpilot.cli.shared import rehearsal_speed, settings_or_exit
    from drpilot.frontdoor.drills import DrillRefused, drill_input
    from drpilot.frontdoor.runs import operator

    rb = load_or_exit(file)
    settings = settings_or_exit()
    try:
        request = drill_input(rb, settings, from_region=from_region, mode=mode, speed=settings.speed,
                              requested_by=operator(), mode_option="--mode")
    except DrillRefused as exc:
        err.print(f"{file}: {exc}" if str(exc).startswith("spec.") else str(exc), markup=False)
        raise typer.Exit(2) from None
    if mode == "rehearsal" and speed is not None:
        request = request.model_copy(update={"speed": rehearsal_speed(speed)})
    return settings, request


def _report(result) -> None:
    """The verdict under the drill's live progress, which already showed every phase."""
    out.print(f"{result.drill_id}: {result.status}" + (f" ({result.reason})" if result.reason else ""), markup=False)
    if result.rto_seconds is not None:
        unscaled = f" (projected at speed 1: {result.rto_seconds_unscaled:.0f}s)" if result.speed != 1 else ""
        verdict = "met" if result.rto_met else "MISSED"
        out.print(f"  RTO {result.rto_seconds:.1f}s{unscaled} vs objective {result.objective_rto_seconds:.0f}s: {verdict}", markup=False)
    for line in result.approvals:
        out.print(f"  {line}", markup=False)
    out.print(f"  evidence: {result.evidence_uri or 'NOT written (see the evidence phase)'}", markup=False)


async def _follow(client, handle):
    """The drill's live progress (drpilot/frontdoor/live.py) until it ends; its result. While a child
    run is in flight its step and weights are shown too: the drill's own phases lack them."""
    import asyncio

    from drpilot.frontdoor import runs
    from drpilot.frontdoor.drills import drill_progress, drill_result
    from drpilot.frontdoor.live import drill_snapshot, follow

    done = asyncio.ensure_future(drill_result(handle))
    try:
        with follow(err) as view:
            while not done.done():
                with contextlib.suppress(runs.RunError):  # no worker has picked it up yet
                    drill = await drill_progress(handle)
                    running = [p.name for p in drill.phases if p.outcome == "running"]
                    child = None
                    if running and running[-1] in ("failover", "failback"):
                        with contextlib.suppress(runs.RunError):  # not started yet
                            child = await runs.progress(client.get_workflow_handle(f"{handle.id}/{running[-1]}"))
                    view.update(drill_snapshot(drill, child))
                await asyncio.wait([done], timeout=1.0)
            with contextlib.suppress(runs.RunError):
                view.update(drill_snapshot(await drill_progress(handle)))
        return done.result()
    finally:
        done.cancel()


@app.command("run")
def run(
    file: Path = typer.Argument(..., help="Runbook YAML file (with spec.drills)."),
    from_region: str = typer.Option(None, "--from", help="The region the drill takes traffic away from; default the primary."),
    mode: str = typer.Option("rehearsal", "--mode", help="rehearsal (sandbox twin, no approvals) or live (real environment, runbook approvals)."),
    yes: bool = typer.Option(False, "--yes", help="Do not ask for confirmation."),
    wait: bool = typer.Option(False, "--wait", help="Follow the drill; exit 0 only when it completes."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    speed: float = typer.Option(None, min=1.0, help="Rehearsal speed >= 1 (default DRPILOT_SPEED); live drills run at 1."),
) -> None:
    """Run a drill now: fail over, soak, fail back, write the evidence pack."""

    from drpilot.cli.shared import confirm, run_async
    from drpilot.frontdoor.drills import drill_result, start_drill
    from drpilot.frontdoor.temporal import connect

    settings, request = _request(file, from_region, mode, speed)
    confirm(yes, f"run a {mode} drill of {request.runbook.name} (fail over away from {request.from_region}, soak, fail back)")

    async def go():
        client = await connect(settings.temporal)
        handle = await start_drill(client, settings, request)
        if not wait:
            return handle.id
        if not as_json:
            err.print(f"started {handle.id}", markup=False)
            return await _follow(client, handle)
        return await drill_result(handle)

    result = run_async(go)
    if isinstance(result, str):
        if as_json:
            typer.echo(json.dumps({"drill_id": result, "status": "running"}))
        else:
            out.print(f"started {result}; follow it with: drpilot drill status {result}", markup=False)
        return
    if as_json:
        typer.echo(result.model_dump_json(indent=2))
    else:
        _report(result)
    if result.status != "completed":
        raise typer.Exit(1)


@app.command("status")
def status(
    drill_id: str = typer.Argument(..., help="A drill id, e.g. drill:llm-inference-2026-12-05T10:00:00Z."),
    as_json: bool = typer.Option(False, "--json", help="Print as JSON."),
) -> None:
    """A drill's phases so far (or its result)."""
    from drpilot.cli.shared import run_async, settings_or_exit
    from drpilot.frontdoor.drills import drill_progress
    from drpilot.frontdoor.temporal import connect

    settings = settings_or_exit()

    async def go():
        client = await connect(settings.temporal)
        return await drill_progress(client.get_workflow_handle(drill_id))

    found = run_async(go)
    if as_json:
        typer.echo(found.model_dump_json(indent=2))
    else:
        from drpilot.frontdoor.live import drill_snapshot, show

        show(out, drill_snapshot(found))


@app.command("schedule")
def schedule(
    file: Path = typer.Argument(..., help="Runbook YAML file (with spec.drills)."),
    cron: str = typer.Option(..., "--cron", help='When, as cron in --timezone: "0 10 * * TUE" is Tuesdays 10:00.'),
    from_region: str = typer.Option(None, "--from", help="The region drills take traffic away from; default the primary."),
    mode: str = typer.Option("rehearsal", "--mode", help="rehearsal (sandbox twin) or live (real environment, runbook approvals)."),
    blackout: list[str] = typer.Option(None, "--blackout", help="MM-DD..MM-DD (every year) with no drills; repeatable."),
    timezone: str = typer.Option("UTC", "--timezone", help="IANA time zone the cron is read in."),
    speed: float = typer.Option(None, min=1.0, help="Rehearsal speed >= 1 (default DRPILOT_SPEED); live drills run at 1."),
) -> None:
    """Create (or update) the runbook's drill schedule: skip when one still runs, pause on failure."""
    from drpilot.cli.shared import run_async
    from drpilot.frontdoor.schedules import (
        ScheduleError,
        blackout_calendars,
        create_or_update,
        schedule_id,
    )
    from drpilot.frontdoor.temporal import connect

    settings, request = _request(file, from_region, mode, speed)
    try:
        for window in blackout or []:
            blackout_calendars(window)
    except ScheduleError as exc:
        err.print(f"error: {exc}", markup=False)
        raise typer.Exit(2) from None

    async def go():
        client = await connect(settings.temporal)
        return await create_or_update(client, settings, request, cron, blackout or [], timezone)

    done = run_async(go)
    sid = schedule_id(request.runbook.name)
    out.print(
        f"{sid}: {done}; {mode} drills of {request.runbook.name} from {request.from_region} at {cron!r} ({timezone})"
        + (f", not in {', '.join(blackout)}" if blackout else "")
        + "; overlapping firings skipped, paused after a failed drill", markup=False,
    )


@app.command("list")
def list_schedules(as_json: bool = typer.Option(False, "--json", help="Print as JSON.")) -> None:
    """Drill schedules: paused or not, when next, when last."""
    from drpilot.cli.shared import run_async, settings_or_exit
    from drpilot.frontdoor.schedules import list_drill_schedules
    from drpilot.frontdoor.temporal import connect

    settings = settings_or_exit()

    async def go():
        return await list_drill_schedules(await connect(settings.temporal))

    found = run_async(go)
    if as_json:
        typer.echo(json.dumps([
            {"schedule_id": s.schedule_id, "paused": s.paused, "note": s.note, "cron": s.cron,
             "next_runs": [t.isoformat() for t in s.next_runs], "last_run": s.last_run.isoformat() if s.last_run else None}
            for s in found
        ]))
        return
    if not found:
        out.print("no drill schedules; create one with `drpilot drill schedule FILE --cron ...`", markup=False)
        return
    table = Table("schedule", "state", "when", "next", "last", "note", box=None)
    for s in found:
        table.add_row(
            s.schedule_id, "paused" if s.paused else "active", "; ".join(s.cron),
            s.next_runs[0].strftime("%Y-%m-%d %H:%M") if s.next_runs else "-",
            s.last_run.strftime("%Y-%m-%d %H:%M") if s.last_run else "-", s.note,
        )
    print_table(table)


def _schedule_control(name: str, request: str) -> None:
    from drpilot.cli.shared import run_async, settings_or_exit
    from drpilot.frontdoor.runs import operator
    from drpilot.frontdoor.schedules import control
    from drpilot.frontdoor.temporal import connect

    settings = settings_or_exit()

    async def go():
        return await control(await connect(settings.temporal), name, request, f"{request} by {operator()}")

    out.print(run_async(go), markup=False)


RUNBOOK_ARG = typer.Argument(..., help="The runbook's name (metadata.name) or the schedule id drill:NAME.")

# The requests a drill schedule takes (drpilot.frontdoor.schedules.control), one command each.
SCHEDULE_REQUESTS = {
    "pause": "Pause a drill schedule (a running drill goes on).",
    "resume": "Resume a paused drill schedule (also after a failed drill paused it).",
    "delete": "Delete a drill schedule; past drills' evidence stays in S3.",
    "trigger": "Fire a drill schedule now, with its own settings (skipped if one still runs).",
}


def _schedule_command(request: str, help: str) -> None:
    def command(name: str = RUNBOOK_ARG) -> None:
        _schedule_control(name, request)

    app.command(request, help=help)(command)


for _request_name, _help in SCHEDULE_REQUESTS.items():
    _schedule_command(_request_name, _help)


@app.command("report")
def report(
    file: Path = typer.Argument(..., help="Runbook YAML file (its spec.drills.evidence is read)."),
    since: str = typer.Option(..., "--since", help="First day of the period, YYYY-MM-DD (UTC)."),
    format: str = typer.Option("md", "--format", help="md or html."),
    output: Path = typer.Option(None, "-o", "--output", help="File to write; stdout when omitted."),
) -> None:
    """A period's drills as an audit document: what was exercised, outcomes, RTO vs objective, who approved, deviations."""
    from datetime import UTC, datetime

    from activities.artifacts.stores import stores_from_settings
    from drpilot.domain.settings import SettingsError, load_settings
    from drpilot.frontdoor.drills import HistoryError, read_history
    from drpilot.report.drills import FORMATS

    if format not in FORMATS:
        err.print(f"error: --format {format}: expected md or html", markup=False)
        raise typer.Exit(2)
    try:
        start = datetime.strptime(since, "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError:
        err.print(f"error: --since {since}: expected a date like 2026-01-01", markup=False)
        raise typer.Exit(2) from None
    rb = load_or_exit(file)
    try:
        past = read_history(rb, stores_from_settings(load_settings()), limit=10_000)
    except (HistoryError, SettingsError) as exc:
        err.print(f"error: {exc}", markup=False)
        raise typer.Exit(1) from None
    text = FORMATS[format](rb.name, start, [p.result for p in past if p.result.started_at >= start])
    if output is None:
        typer.echo(text, nl=False)
        return
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        err.print(f"error: -o {output}: {exc.strerror or exc}", markup=False)
        raise typer.Exit(1) from None


@app.command("history")
def history(
    file: Path = typer.Argument(..., help="Runbook YAML file (its spec.drills.evidence is read)."),
    limit: int = typer.Option(20, "--limit", min=1, help="How many of the latest drills."),
    as_json: bool = typer.Option(False, "--json", help="Print the evidence packs as a JSON list."),
) -> None:
    """Past drills from their evidence packs: per-phase times and the RTO trend against the objective."""
    from activities.artifacts.stores import stores_from_settings
    from drpilot.domain.settings import SettingsError, load_settings
    from drpilot.frontdoor.drills import HistoryError, cold_start_trend, read_history, trend

    rb = load_or_exit(file)
    try:
        past = read_history(rb, stores_from_settings(load_settings()), limit)
    except (HistoryError, SettingsError) as exc:
        err.print(f"error: {exc}", markup=False)
        raise typer.Exit(1) from None
    if as_json:
        typer.echo(json.dumps([p.result.model_dump(mode="json") for p in past], indent=2))
        return
    if not past:
        out.print(f"no drills of {rb.name} in {rb.spec.drills.evidence if rb.spec.drills else '-'}", markup=False)
        return
    names = ["preflight", "failover", "soak", "failback", "cleanup"]
    table = Table("started", "mode", "status", *(f"{n} s" for n in names), "RTO s", "RTO@1 s", "objective", box=None,
                  title=f"drills of {rb.name}")
    for p in past:
        r = p.result
        seconds = {ph.name: ph.seconds for ph in r.phases}
        table.add_row(
            r.started_at.strftime("%Y-%m-%d %H:%M"), r.mode, r.status,
            *(f"{seconds[n]:.1f}" if seconds.get(n) is not None else "-" for n in names),
            f"{r.rto_seconds:.1f}" if r.rto_seconds is not None else "-",
            f"{r.rto_seconds_unscaled:.0f}" if r.rto_seconds_unscaled is not None else "-",
            f"{r.objective_rto_seconds:.0f}" + ("" if r.rto_met is None else " met" if r.rto_met else " MISSED"),
        )
    print_table(table)
    for line in [*cold_start_trend(past), trend(past)]:  # the RTO's, the summary, last
        out.print(line, markup=False)

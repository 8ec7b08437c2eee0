"""`drpilot evacuate REGION --runbooks DIR`: every runbook serving from a lost region, moved at once.

One plan (what each runbook's failover would do, what is not ready), one confirmation, every
failover started together with its own guardrails, one live view (runbook x phase), one
summary (outcome and RTO per runbook, the fleet's slowest), and with --report a report of the
whole beside each run's own (drpilot/frontdoor/evacuation.py).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.table import Table

from drpilot.cli.runs import AsJson, Reason, Speed, Yes
from drpilot.cli.shared import (
    confirm,
    out,
    print_table,
    rehearsal_speed,
    report_dir_or_exit,
    run_async,
    settings_or_exit,
    write_report,
    write_reports,
)
from drpilot.cli.terminal import err

if TYPE_CHECKING:
    from drpilot.frontdoor.evacuation import Fleet, Member
    from drpilot.frontdoor.runs import RunError, Started
    from workflows.types import RunResult


def evacuate(
    region: str = typer.Argument(..., help="The region lost: every runbook serving from it fails over."),
    runbooks: Path = typer.Option(..., "--runbooks", help="Directory of runbook YAML files (the fleet)."),
    strategy: str = typer.Option("graceful", help="graceful: prepare, gate, then DNS. ungraceful: DNS first (region already dark)."),
    reason: Reason = "",
    yes: Yes = False,
    as_json: AsJson = False,
    speed: Speed = None,
    report_dir: Path = typer.Option(None, "--report", help="Write each run's report and the evacuation's into this directory."),
) -> None:
    """Fail over every runbook of a directory that serves from REGION, together, and follow them."""
    from drpilot.frontdoor import evacuation
    from drpilot.frontdoor.runs import operator
    from workflows.types import FailoverInput

    if strategy not in ("graceful", "ungraceful"):
        err.print(f"--strategy: expected graceful or ungraceful, got {strategy!r}", markup=False)
        raise typer.Exit(2)
    if not runbooks.is_dir():
        err.print(f"--runbooks {runbooks}: not a directory of runbook files", markup=False)
        raise typer.Exit(2)
    report_dir = report_dir_or_exit(report_dir, True)
    settings = settings_or_exit()
    members = evacuation.survey(runbooks, region, settings)
    if not members:
        err.print(f"--runbooks {runbooks}: no runbook files (*.yaml, *.yml)", markup=False)
        raise typer.Exit(2)
    moving = evacuation.evacuees(members)
    if not as_json:
        _print_plan(region, members)
    if not moving:
        err.print(f"no runbook of {runbooks} serves from {region} now: nothing to evacuate", markup=False)
        raise typer.Exit(1 if any(m.problem for m in members) else 0)
    confirm(yes, f"fail over {len(moving)} runbook(s) away from {region}")
    by, why, pace = operator(), reason or f"evacuation of {region}", rehearsal_speed(speed)

    def request(rb) -> FailoverInput:
        return FailoverInput(runbook=rb, failed_region=region, strategy=strategy, trigger="cli", reason=why,
                             speed=pace, requested_by=by)

    async def go():
        from drpilot.frontdoor.temporal import connect

        client = await connect(settings.temporal)
        started = await evacuation.start(client, settings, moving, request)
        handles = [s for s in started if not isinstance(s, Exception)]
        refused = {m.name: s for m, s in zip(moving, started, strict=True) if isinstance(s, Exception)}
        from drpilot.frontdoor.live import FleetView

        with FleetView(err, f"evacuation of {region}") as view:
            fleet = await evacuation.follow(handles, view.update)
        written = []
        if report_dir is not None:
            for s in handles:
                ended = fleet.results[s.handle.id]
                if not isinstance(ended, Exception):
                    written += await write_reports(client, s.handle.id, ended.temporal_run_id, report_dir)
        return started, refused, fleet, written

    started, refused, fleet, written = run_async(go)
    rows = _summary(moving, started, fleet)
    if report_dir is not None:
        written.append(_write_report(report_dir, region, members, rows))
        for path in written:
            err.print(f"report: {path}", markup=False)
    if as_json:
        left = [{"runbook": m.name, "file": str(m.file), "why": m.left_alone} for m in members if m not in moving]
        typer.echo(json.dumps({"region": region, "runs": rows, "left_alone": left}, indent=2))
    else:
        _print_summary(region, rows)
    if refused or any(r["outcome"] != "completed" for r in rows):
        raise typer.Exit(1)


def _print_plan(region: str, members: list[Member]) -> None:
    from workflows.plan import format_weights

    table = Table("runbook", "DNS now", "failover plan", "not ready", title=f"evacuation of {region}")
    for m in members:
        if m.serving and not m.problem:
            assert m.plan is not None
            table.add_row(m.name, format_weights(m.weights), "\n".join(m.plan.changes) or "-", "\n".join(m.plan.warnings) or "-")
    print_table(table)
    alone = [m for m in members if not (m.serving and not m.problem)]
    for m in alone:
        out.print(f"left alone: {m.name} ({m.file.name}): {m.left_alone}", markup=False)


def _summary(moving: list[Member], started: list[Started | RunError], fleet: Fleet) -> list[dict]:
    rows = []
    for m, s in zip(moving, started, strict=True):
        if isinstance(s, Exception):
            rows.append({"runbook": m.name, "run_id": None, "outcome": "not started", "detail": str(s)})
            continue
        ended: RunResult | RunError = fleet.results[s.handle.id]
        if isinstance(ended, Exception):
            rows.append({"runbook": m.name, "run_id": s.handle.id, "outcome": "no result", "detail": str(ended)})
            continue
        rows.append({
            "runbook": m.name, "run_id": ended.run_id, "outcome": ended.status, "attached": s.attached,
            "rto_seconds": ended.rto_seconds, "rto_seconds_unscaled": ended.rto_seconds_unscaled,
            "objective_rto_seconds": ended.objective_rto_seconds, "dns": ended.final_state.dns,
            "detail": ended.messages[-1] if ended.messages else "",
        })
    return rows


def _rto(row: dict) -> str:
    seconds = row.get("rto_seconds_unscaled") or row.get("rto_seconds")
    return "-" if seconds is None else f"{seconds:.0f}"


def _print_summary(region: str, rows: list[dict]) -> None:
    table = Table("runbook", "outcome", "RTO s (speed 1)", "objective s", "DNS", title=f"evacuation of {region}: summary")
    for r in rows:
        dns = ", ".join(f"{k} {v}" for k, v in (r.get("dns") or {}).items()) or "-"
        objective = r.get("objective_rto_seconds")
        table.add_row(r["runbook"], r["outcome"], _rto(r), "-" if objective is None else f"{objective:.0f}", dns)
    print_table(table)
    done = [r for r in rows if r["outcome"] == "completed"]
    line = f"{len(done)} of {len(rows)} runbook(s) completed"
    timed = [r for r in rows if _rto(r) != "-"]
    if timed:
        slowest = max(timed, key=lambda r: float(_rto(r)))
        line += f"; the fleet's slowest: {slowest['runbook']}, RTO {_rto(slowest)}s"
    out.print(line, markup=False)


def _write_report(directory: Path, region: str, members: list[Member], rows: list[dict]) -> Path:
    lines = [f"# Evacuation of {region}", "", f"{datetime.now(UTC):%Y-%m-%d %H:%M:%SZ}", "",
             "| runbook | outcome | RTO s | objective s | run |", "| --- | --- | --- | --- | --- |"]
    for r in rows:
        objective = r.get("objective_rto_seconds")
        lines.append(f"| {r['runbook']} | {r['outcome']} | {_rto(r)} | {'-' if objective is None else f'{objective:.0f}'} "
                     f"| {r.get('run_id') or '-'} |")
    alone = [m for m in members if not (m.serving and not m.problem)]
    if alone:
        lines += ["", "## Left alone", ""] + [f"- {m.name} ({m.file.name}): {m.left_alone}" for m in alone]
    path = directory / f"evacuation-{region}-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.md"
    write_report(path, "\n".join(lines) + "\n")
    return path

"""The run commands on the root app: failover, failback, report, status, approve, abort,
pause, resume. Each starts or steers a run through drpilot.frontdoor.runs."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from drpilot.cli.shared import (
    REPORT_FORMATS,
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
from drpilot.cli.terminal import err, load_or_exit
from drpilot.frontdoor.live import weights_text

if TYPE_CHECKING:
    from drpilot.domain.runbook import Runbook
    from workflows.types import FailbackInput, FailoverInput


def _start_and_report(request, wait: bool, as_json: bool, report_dir: Path | None = None) -> None:
    from drpilot.frontdoor import runs
    from drpilot.frontdoor.live import follow, snapshot
    from drpilot.frontdoor.temporal import connect

    settings = settings_or_exit()
    reports: list[Path] = []

    async def go():
        client = await connect(settings.temporal)
        started = await runs.start(client, settings, request)
        handle = started.handle
        verb = "attached to" if started.attached else "started"
        if not wait:
            if as_json:
                typer.echo(json.dumps({"run_id": handle.id, "status": "running", "attached": started.attached}))
            else:
                out.print(f"{verb} {handle.id}; follow it with: drpilot status {handle.id}", markup=False)
            return None
        if not as_json:
            err.print(f"{verb} {handle.id}", markup=False)
        if as_json:
            result = await runs.result(handle)
        else:
            with follow(err) as view:
                result = await runs.watch(handle, lambda p: view.update(snapshot(p)))
        if report_dir is not None:
            reports.extend(await write_reports(client, handle.id, result.temporal_run_id, report_dir))
        return result

    result = run_async(go)
    if result is None:
        return
    for path in reports:
        err.print(f"report: {path}", markup=False)
    if as_json:
        typer.echo(result.model_dump_json(indent=2))
    else:
        # The run's own messages carry the RTO verdict (failover) or the time home (failback).
        out.print(f"{result.run_id}: {result.status}; DNS {weights_text(result.final_state.dns)}", markup=False)
        for message in result.messages[-5:]:
            out.print(f"  {message}", markup=False)
    if result.status != "completed":
        raise typer.Exit(1)


def _start_checked(
    rb: Runbook, regions: list[str], what: str, request: Callable[[str], FailoverInput | FailbackInput], *,
    yes: bool, wait: bool, as_json: bool, report_dir: Path | None,
) -> None:
    """Refuse a region the runbook does not have and a --report without --wait before asking
    to `what`; once confirmed, start the run request(operator) describes."""
    from drpilot.frontdoor.runs import operator

    for region in regions:
        if region not in rb.regions:
            err.print(f"unknown region {region!r}; {rb.name} has {', '.join(rb.regions)}", markup=False)
            raise typer.Exit(2)
    report_dir = report_dir_or_exit(report_dir, wait)
    confirm(yes, what)
    _start_and_report(request(operator()), wait, as_json, report_dir)


# The options failover and failback share, declared once.
Reason = Annotated[str, typer.Option(help="Why; recorded in the run.")]
Yes = Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")]
Wait = Annotated[bool, typer.Option("--wait", help="Follow live progress; exit 0 only when the run completes.")]
AsJson = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]
Speed = Annotated[float, typer.Option(min=1.0, help="Rehearsal speed >= 1 (default DRPILOT_SPEED, else 1).")]
ReportDir = Annotated[
    Path,
    typer.Option("--report", help="With --wait: write the run's report (HTML and Markdown) into this directory when it ends."),
]


def failover(
    file: Path = typer.Argument(..., help="Runbook YAML file."),
    from_region: str = typer.Option(..., "--from", help="The failed region."),
    to: list[str] = typer.Option(None, "--to", help="Target region(s); default: the standby, or all healthy serving regions."),
    strategy: str = typer.Option("graceful", help="graceful: prepare, gate, then DNS. ungraceful: DNS first (region already dark)."),
    reason: Reason = "",
    yes: Yes = False,
    wait: Wait = False,
    as_json: AsJson = False,
    speed: Speed = None,
    report_dir: ReportDir = None,
    override_safety_rule: list[str] = typer.Option(
        None, "--override-safety-rule", metavar="NAME",
        help="Break-glass: let the routing-control switch override this Route 53 ARC safety rule "
        "(a name from spec.dns.routing_controls.safety_rules, or its ARN); repeatable. Recorded in the result, report and notifications.",
    ),
) -> None:
    """Move serving away from a failed region."""
    from workflows.types import FailoverInput

    rb = load_or_exit(file)
    if strategy not in ("graceful", "ungraceful"):
        err.print(f"--strategy: expected graceful or ungraceful, got {strategy!r}", markup=False)
        raise typer.Exit(2)
    overrides = list(override_safety_rule or [])
    problem = _override_problem(rb, overrides)
    if problem:
        err.print(f"--override-safety-rule: {problem}", markup=False)
        raise typer.Exit(2)
    _start_checked(
        rb, [from_region, *(to or [])], f"fail over {rb.name} away from {from_region}",
        lambda operator: FailoverInput(
            runbook=rb, failed_region=from_region, target_regions=to or None, strategy=strategy,
            trigger="cli", reason=reason, speed=rehearsal_speed(speed), requested_by=operator,
            override_safety_rules=overrides,
        ),
        yes=yes, wait=wait, as_json=as_json, report_dir=report_dir,
    )


def _override_problem(rb, overrides: list[str]) -> str:
    """Why the safety rules to override cannot be, or "" when they can."""
    if not overrides:
        return ""
    arc = rb.spec.dns.routing_controls
    if arc is None:
        return f"runbook {rb.name} switches by weights; safety rules belong to routing controls (spec.dns.switch: routing_controls)"
    unknown = [name for name in overrides if name not in arc.safety_rules and not name.startswith("arn:")]
    if unknown:
        known = ", ".join(sorted(arc.safety_rules)) or "none"
        return f"unknown safety rule(s) {', '.join(unknown)}; the runbook names {known} (spec.dns.routing_controls.safety_rules), or give an ARN"
    return ""


def failback(
    file: Path = typer.Argument(..., help="Runbook YAML file."),
    to: str = typer.Option(..., "--to", help="The recovered region traffic returns to."),
    reason: Reason = "",
    yes: Yes = False,
    wait: Wait = False,
    as_json: AsJson = False,
    speed: Speed = None,
    report_dir: ReportDir = None,
) -> None:
    """Bring traffic back to a recovered region gradually, rolling back on degradation."""
    from workflows.types import FailbackInput

    rb = load_or_exit(file)
    _start_checked(
        rb, [to], f"fail {rb.name} back to {to}",
        lambda operator: FailbackInput(
            runbook=rb, original_region=to, trigger="cli", reason=reason,
            speed=rehearsal_speed(speed), requested_by=operator,
        ),
        yes=yes, wait=wait, as_json=as_json, report_dir=report_dir,
    )


def report(
    run_id: str = typer.Argument(..., help="The run, e.g. failback:llm-inference (its latest execution)."),
    format: str = typer.Option("html", "--format", help="html (one self-contained file) or md (Markdown)."),
    output: Path = typer.Option(None, "-o", "--output", help="File to write; stdout when omitted."),
    temporal_run_id: str = typer.Option(None, "--temporal-run-id", help="One execution of RUN_ID (as in its result), when it ran more than once."),
) -> None:
    """Write a run's report: timeline, RTO vs objective, weights, gates' evidence, changes, who triggered and approved."""
    from drpilot import report as reports
    from drpilot.frontdoor import runs
    from drpilot.frontdoor.temporal import connect

    if format not in REPORT_FORMATS:
        err.print(f"--format: expected html or md, got {format!r}", markup=False)
        raise typer.Exit(2)
    if output is not None and output.is_dir():
        err.print(f"error: -o {output} is a directory; name a file", markup=False)
        raise typer.Exit(2)
    settings = settings_or_exit()

    async def go():
        return await runs.history(await connect(settings.temporal), run_id, temporal_run_id)

    history = run_async(go)
    try:
        text = reports.render(history, format)
    except reports.NotARun as exc:
        err.print(f"error: {exc}", markup=False)
        raise typer.Exit(1) from None
    if output is None:
        typer.echo(text, nl=False)
        return
    write_report(output, text)
    err.print(f"report: {output}", markup=False)


OUTCOMES = ("completed", "failed", "rolled_back", "aborted", "terminated", "timed_out", "canceled")


def status(
    run_id: str = typer.Argument(None, help="A run id (e.g. failover:llm-inference); omit to list recent runs."),
    as_json: bool = typer.Option(False, "--json", help="Print as JSON."),
    runbook: str = typer.Option(None, "--runbook", help="List only this runbook's runs (its metadata.name)."),
    outcome: str = typer.Option(None, "--outcome", help=f"List only runs that ended so: {', '.join(OUTCOMES[:4])}."),
    limit: int = typer.Option(20, "--limit", min=1, help="How many runs to list, newest first."),
) -> None:
    """Show a run's progress, or list recent runs with drpilot's own outcome."""
    from drpilot.frontdoor import runs
    from drpilot.frontdoor.temporal import connect

    if outcome is not None and outcome not in OUTCOMES:
        err.print(f"--outcome: expected one of {', '.join(OUTCOMES)}, got {outcome!r}", markup=False)
        raise typer.Exit(2)
    from drpilot.frontdoor.drills import DRILL_ID_PREFIX

    if run_id is not None and run_id.startswith(DRILL_ID_PREFIX) and "/" not in run_id:
        # A drill answers its own query (phases, children); its children (ID/failover,
        # ID/failback) are ordinary runs and are shown below.
        from drpilot.cli.drill import status as drill_status

        drill_status(run_id, as_json)
        return
    settings = settings_or_exit()

    async def go():
        client = await connect(settings.temporal)
        if run_id is None:
            return await runs.latest_runs(client, limit, runbook=runbook, outcome=outcome)
        return await runs.progress(client.get_workflow_handle(run_id))

    found = run_async(go)
    if run_id is None:
        if as_json:
            typer.echo(json.dumps([
                {"run_id": r.run_id, "runbook": r.runbook, "state": r.state, "outcome": r.outcome,
                 "started_at": r.started_at.isoformat() if r.started_at else None}
                for r in found
            ]))
        elif not found:
            out.print(f"no drpilot runs in namespace {settings.temporal.namespace} at {settings.temporal.address}", markup=False)
        else:
            table = Table("run", "state", "outcome", "started", box=None)
            for r in found:
                started = r.started_at.strftime("%Y-%m-%d %H:%M:%S") if r.started_at else "-"
                table.add_row(r.run_id, r.state, r.outcome or "-", started)
            print_table(table)
        return
    if as_json:
        typer.echo(found.model_dump_json(indent=2))
    else:
        from drpilot.frontdoor.live import show, snapshot

        show(out, snapshot(found))


def _control(run_id: str, request: str) -> None:
    from drpilot.frontdoor import runs
    from drpilot.frontdoor.temporal import connect

    settings = settings_or_exit()

    async def go():
        return await runs.control(await connect(settings.temporal), run_id, request)

    answer = run_async(go)
    out.print(f"{run_id}: {answer.message}" + (f"; DNS {weights_text(answer.weights)}" if answer.weights else ""), markup=False)


def approve(run_id: str = typer.Argument(..., help="The run waiting for approval.")) -> None:
    """Approve a run waiting at its approval gate."""
    _control(run_id, "approve")


def abort(run_id: str = typer.Argument(..., help="The run to abort.")) -> None:
    """Abort a run: DNS returns to the last state that passed its health gate."""
    _control(run_id, "abort")


def pause(run_id: str = typer.Argument(..., help="The run whose traffic shift holds.")) -> None:
    """Hold a traffic shift at the next step boundary."""
    _control(run_id, "pause")


def resume(run_id: str = typer.Argument(..., help="The paused run.")) -> None:
    """Resume a paused traffic shift."""
    _control(run_id, "resume")

"""The on-call command line: `drpilot ...`. Every user mistake is one clear message and a
non-zero exit, never a traceback."""

from __future__ import annotations

import json
from pathlib import Path
from typing import NoReturn

import typer
from rich.console import Console
from rich.table import Table
from temporalio.exceptions import ApplicationError

from drpilot import __version__
from drpilot.artifacts_cli import app as artifacts_app
from drpilot.drill_cli import app as drill_app
from drpilot.durations import format_duration
from drpilot.loader import load_runbook
from drpilot.process_exit import run_and_exit
from drpilot.readiness_cli import readiness
from drpilot.runbook import Runbook
from drpilot.sandbox.cli import app as sandbox_app
from drpilot.terminal import err, load_or_exit, validate_files
from drpilot.webhook.cli import app as webhook_app

app = typer.Typer(
    name="drpilot",
    help="Disaster-recovery orchestration for ML / LLM inference: failover, failback, drills.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
runbook_app = typer.Typer(help="Validate, inspect and export runbooks.", no_args_is_help=True)
app.add_typer(runbook_app, name="runbook")
app.add_typer(sandbox_app, name="sandbox")
app.add_typer(artifacts_app, name="artifacts")
app.add_typer(webhook_app, name="webhook")
app.add_typer(drill_app, name="drill")
app.command("readiness")(readiness)

out = Console(soft_wrap=True)


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
    finalization, which temporalio's client threads can crash (drpilot/process_exit.py)."""
    run_and_exit(lambda: app(prog_name=prog_name))


@runbook_app.command("validate")
def validate(files: list[Path] = typer.Argument(..., help="Runbook YAML files.", metavar="FILE...")) -> None:
    """Check runbooks; print every problem as FILE:LINE:COL: field: message. Exit 1 if any."""
    validate_files(files, load_runbook, "runbook")


@runbook_app.command("schema")
def schema() -> None:
    """Print the runbook JSON Schema (for editors; committed as runbooks/schema.json)."""
    typer.echo(json.dumps(runbook_schema(), indent=2))


def runbook_schema() -> dict:
    document = Runbook.model_json_schema()
    document["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    document["title"] = "drpilot runbook (drpilot/v1)"
    return document


@runbook_app.command("show")
def show(file: Path = typer.Argument(..., help="Runbook YAML file.")) -> None:
    """Summarise a runbook: regions, DNS records, workloads, models, objectives."""
    rb = load_or_exit(file)
    spec = rb.spec
    out.print(f"[bold]{rb.name}[/bold]  owner: {rb.metadata.owner or '-'}")
    out.print(
        f"objectives: RTO {format_duration(spec.objectives.rto)}, RPO {format_duration(spec.objectives.rpo)}"
    )
    weights = rb.normal_weights()
    regions = Table("region", "role", "endpoint", "kube context", "capacity", "normal weight", title="Regions")
    for name, region in spec.regions.items():
        regions.add_row(name, region.role.value, region.endpoint, region.kube.context, f"{region.capacity:g}", str(weights[name]))
    out.print(regions)
    records = Table("record", "type", "ttl", "targets", title=f"DNS ({spec.dns.provider.value}, zone {spec.dns.zone})")
    for record in spec.dns.records:
        records.add_row(record.name, record.type.value, f"{record.ttl}s", "\n".join(f"{r}: {t}" for r, t in record.targets.items()))
    out.print(records)
    if spec.workloads:
        workloads = Table("namespace/deployment", "active", "standby", "regions", title="Workloads")
        for w in spec.workloads:
            workloads.add_row(f"{w.namespace}/{w.deployment}", str(w.replicas.active), str(w.replicas.standby), ", ".join(w.regions or ["all"]))
        out.print(workloads)
    if spec.models:
        models = Table("model", "version", "archive", title="Models")
        for m in spec.models:
            models.add_row(m.name, m.version, m.archive or "-")
        out.print(models)
    shift = spec.traffic_shift
    out.print(
        f"traffic shift: {' -> '.join(f'{s}%' for s in shift.steps)}, bake {format_duration(shift.bake)}, "
        f"rollback above {shift.rollback.max_error_rate:.2%} errors or p99 {format_duration(shift.rollback.max_p99_latency)}"
    )
    approvals = spec.approvals
    out.print(
        f"approvals: failover {approvals.failover.value}, failback {approvals.failback.value}, "
        f"timeout {format_duration(approvals.timeout)} then {approvals.on_timeout}"
    )


@runbook_app.command("plan")
def plan(
    file: Path = typer.Argument(..., help="Runbook YAML file."),
    action: str = typer.Option(..., "--action", help="failover or failback."),
    from_region: str = typer.Option(None, "--from", help="failover: the failed region."),
    to: list[str] = typer.Option(None, "--to", help="failover: target region(s); failback: the region to return to."),
) -> None:
    """Dry run: read live state and print the changes a run would make. Changes nothing."""
    from drpilot.dry_run import plan_failback, plan_failover
    from workflows.plan import PlanError

    rb = load_or_exit(file)
    settings = _settings()
    try:
        if action == "failover":
            if not from_region:
                raise PlanError("failover needs --from REGION (the failed region)")
            result = plan_failover(rb, from_region, to or None, settings)
        elif action == "failback":
            if not to or len(to) != 1:
                raise PlanError("failback needs exactly one --to REGION (the region to return to)")
            result = plan_failback(rb, to[0], settings)
        else:
            raise PlanError(f"--action: expected failover or failback, got {action!r}")
    except PlanError as exc:
        err.print(f"error: {exc}", markup=False)
        raise typer.Exit(2) from None
    except ApplicationError as exc:
        err.print(f"error: cannot read live state: {exc.message}", markup=False)
        raise typer.Exit(1) from None
    out.print(f"plan: {result.action} of {rb.name} (nothing is changed)", markup=False)
    for number, change in enumerate(result.changes, 1):
        out.print(f"  {number}. {change}", markup=False)
    for note in result.notes:
        out.print(f"  note: {note}", markup=False)
    for warning in result.warnings:
        out.print(f"  warning: {warning}", markup=False)


# ------------------------------------------------------------------------ runs (Temporal)
def _settings():
    from drpilot.settings import SettingsError, load_settings

    try:
        return load_settings()
    except SettingsError as exc:
        err.print(f"error: {exc}", markup=False)
        raise typer.Exit(2) from None


def _speed(option: float | None) -> float:
    """The run's rehearsal speed: --speed, else DRPILOT_SPEED; above 1 only in a sandbox."""
    from drpilot.settings import SettingsError, check_speed

    settings = _settings()
    if option is None:
        return settings.speed
    try:
        check_speed(option, settings.sandbox, f"--speed {option:g}")
    except SettingsError as exc:
        err.print(f"error: {exc}", markup=False)
        raise typer.Exit(2) from None
    return option


def _run_async(coroutine_factory):
    """Run an async front-door action; Temporal and run errors become one line, exit 1."""
    import asyncio

    from drpilot.runs import RunError
    from drpilot.temporal import TemporalUnavailable

    try:
        return asyncio.run(coroutine_factory())
    except (TemporalUnavailable, RunError) as exc:
        err.print(f"error: {exc}", markup=False)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        err.print("interrupted: the run goes on in Temporal; see `drpilot status`", markup=False)
        raise typer.Exit(130) from None


def _weights(weights: dict[str, int]) -> str:
    from drpilot.live import weights_text

    return weights_text(weights)


def _confirm(yes: bool, what: str) -> None:
    import sys

    if yes:
        return
    if not sys.stdin.isatty():
        err.print(f"refusing to {what} without confirmation: pass --yes", markup=False)
        raise typer.Exit(2)
    if not typer.confirm(f"{what}?"):
        raise typer.Exit(1)


REPORT_FORMATS = ("html", "md")


def _report_dir(directory: Path | None, wait: bool) -> Path | None:
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


def _write_report(path: Path, text: str) -> None:
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        err.print(f"error: cannot write {path}: {exc.strerror or exc}", markup=False)
        raise typer.Exit(1) from None


async def _write_reports(client, run_id: str, temporal_run_id: str, directory: Path) -> list[Path]:
    """The finished run's report in every format, named after the run (drpilot.report.file_name)."""
    from drpilot import report, runs

    history = await runs.history(client, run_id, temporal_run_id or None)
    facts = report.read(history)
    written = []
    for format in REPORT_FORMATS:
        path = directory / report.file_name(facts, format)
        _write_report(path, report.FORMATS[format](report.build(facts)))
        written.append(path)
    return written


def _start_and_report(request, wait: bool, as_json: bool, report_dir: Path | None = None) -> None:
    from drpilot import runs
    from drpilot.live import follow, snapshot
    from drpilot.temporal import connect

    settings = _settings()
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
            reports.extend(await _write_reports(client, handle.id, result.temporal_run_id, report_dir))
        return result

    result = _run_async(go)
    if result is None:
        return
    for path in reports:
        err.print(f"report: {path}", markup=False)
    if as_json:
        typer.echo(result.model_dump_json(indent=2))
    else:
        # The run's own messages carry the RTO verdict (failover) or the time home (failback).
        out.print(f"{result.run_id}: {result.status}; DNS {_weights(result.final_state.dns)}", markup=False)
        for message in result.messages[-5:]:
            out.print(f"  {message}", markup=False)
    if result.status != "completed":
        raise typer.Exit(1)


@app.command()
def failover(
    file: Path = typer.Argument(..., help="Runbook YAML file."),
    from_region: str = typer.Option(..., "--from", help="The failed region."),
    to: list[str] = typer.Option(None, "--to", help="Target region(s); default: the standby, or all healthy serving regions."),
    strategy: str = typer.Option("graceful", help="graceful: prepare, gate, then DNS. ungraceful: DNS first (region already dark)."),
    reason: str = typer.Option("", help="Why; recorded in the run."),
    yes: bool = typer.Option(False, "--yes", help="Do not ask for confirmation."),
    wait: bool = typer.Option(False, "--wait", help="Follow live progress; exit 0 only when the run completes."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    speed: float = typer.Option(None, min=1.0, help="Rehearsal speed >= 1 (default DRPILOT_SPEED, else 1)."),
    report_dir: Path = typer.Option(None, "--report", help="With --wait: write the run's report (HTML and Markdown) into this directory when it ends."),
) -> None:
    """Move serving away from a failed region."""
    from workflows.types import FailoverInput

    rb = load_or_exit(file)
    if strategy not in ("graceful", "ungraceful"):
        err.print(f"--strategy: expected graceful or ungraceful, got {strategy!r}", markup=False)
        raise typer.Exit(2)
    for region in [from_region, *(to or [])]:
        if region not in rb.regions:
            err.print(f"unknown region {region!r}; {rb.name} has {', '.join(rb.regions)}", markup=False)
            raise typer.Exit(2)
    report_dir = _report_dir(report_dir, wait)
    _confirm(yes, f"fail over {rb.name} away from {from_region}")
    from drpilot.runs import operator

    request = FailoverInput(
        runbook=rb, failed_region=from_region, target_regions=to or None, strategy=strategy,
        trigger="cli", reason=reason, speed=_speed(speed), requested_by=operator(),
    )
    _start_and_report(request, wait, as_json, report_dir)


@app.command()
def failback(
    file: Path = typer.Argument(..., help="Runbook YAML file."),
    to: str = typer.Option(..., "--to", help="The recovered region traffic returns to."),
    reason: str = typer.Option("", help="Why; recorded in the run."),
    yes: bool = typer.Option(False, "--yes", help="Do not ask for confirmation."),
    wait: bool = typer.Option(False, "--wait", help="Follow live progress; exit 0 only when the run completes."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    speed: float = typer.Option(None, min=1.0, help="Rehearsal speed >= 1 (default DRPILOT_SPEED, else 1)."),
    report_dir: Path = typer.Option(None, "--report", help="With --wait: write the run's report (HTML and Markdown) into this directory when it ends."),
) -> None:
    """Bring traffic back to a recovered region gradually, rolling back on degradation."""
    from drpilot.runs import operator
    from workflows.types import FailbackInput

    rb = load_or_exit(file)
    if to not in rb.regions:
        err.print(f"unknown region {to!r}; {rb.name} has {', '.join(rb.regions)}", markup=False)
        raise typer.Exit(2)
    report_dir = _report_dir(report_dir, wait)
    _confirm(yes, f"fail {rb.name} back to {to}")
    request = FailbackInput(
        runbook=rb, original_region=to, trigger="cli", reason=reason,
        speed=_speed(speed), requested_by=operator(),
    )
    _start_and_report(request, wait, as_json, report_dir)


@app.command()
def report(
    run_id: str = typer.Argument(..., help="The run, e.g. failback:llm-inference (its latest execution)."),
    format: str = typer.Option("html", "--format", help="html (one self-contained file) or md (Markdown)."),
    output: Path = typer.Option(None, "-o", "--output", help="File to write; stdout when omitted."),
    temporal_run_id: str = typer.Option(None, "--temporal-run-id", help="One execution of RUN_ID (as in its result), when it ran more than once."),
) -> None:
    """Write a run's report: timeline, RTO vs objective, weights, gates' evidence, changes, who triggered and approved."""
    from drpilot import report as reports
    from drpilot import runs
    from drpilot.temporal import connect

    if format not in REPORT_FORMATS:
        err.print(f"--format: expected html or md, got {format!r}", markup=False)
        raise typer.Exit(2)
    if output is not None and output.is_dir():
        err.print(f"error: -o {output} is a directory; name a file", markup=False)
        raise typer.Exit(2)
    settings = _settings()

    async def go():
        return await runs.history(await connect(settings.temporal), run_id, temporal_run_id)

    history = _run_async(go)
    try:
        text = reports.render(history, format)
    except reports.NotARun as exc:
        err.print(f"error: {exc}", markup=False)
        raise typer.Exit(1) from None
    if output is None:
        typer.echo(text, nl=False)
        return
    _write_report(output, text)
    err.print(f"report: {output}", markup=False)


OUTCOMES = ("completed", "failed", "rolled_back", "aborted", "terminated", "timed_out", "canceled")


@app.command()
def status(
    run_id: str = typer.Argument(None, help="A run id (e.g. failover:llm-inference); omit to list recent runs."),
    as_json: bool = typer.Option(False, "--json", help="Print as JSON."),
    runbook: str = typer.Option(None, "--runbook", help="List only this runbook's runs (its metadata.name)."),
    outcome: str = typer.Option(None, "--outcome", help=f"List only runs that ended so: {', '.join(OUTCOMES[:4])}."),
    limit: int = typer.Option(20, "--limit", min=1, help="How many runs to list, newest first."),
) -> None:
    """Show a run's progress, or list recent runs with drpilot's own outcome."""
    from drpilot import runs
    from drpilot.temporal import connect

    if outcome is not None and outcome not in OUTCOMES:
        err.print(f"--outcome: expected one of {', '.join(OUTCOMES)}, got {outcome!r}", markup=False)
        raise typer.Exit(2)
    from drpilot.drills import DRILL_ID_PREFIX

    if run_id is not None and run_id.startswith(DRILL_ID_PREFIX) and "/" not in run_id:
        # A drill answers its own query (phases, children); its children (ID/failover,
        # ID/failback) are ordinary runs and are shown below.
        from drpilot.drill_cli import status as drill_status

        drill_status(run_id, as_json)
        return
    settings = _settings()

    async def go():
        client = await connect(settings.temporal)
        if run_id is None:
            return await runs.latest_runs(client, limit, runbook=runbook, outcome=outcome)
        return await runs.progress(client.get_workflow_handle(run_id))

    found = _run_async(go)
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
            out.print(table)
        return
    if as_json:
        typer.echo(found.model_dump_json(indent=2))
    else:
        from drpilot.live import show, snapshot

        show(out, snapshot(found))


def _control(run_id: str, request: str) -> None:
    from drpilot import runs
    from drpilot.temporal import connect

    settings = _settings()

    async def go():
        return await runs.control(await connect(settings.temporal), run_id, request)

    answer = _run_async(go)
    out.print(f"{run_id}: {answer.message}" + (f"; DNS {_weights(answer.weights)}" if answer.weights else ""), markup=False)


@app.command()
def approve(run_id: str = typer.Argument(..., help="The run waiting for approval.")) -> None:
    """Approve a run waiting at its approval gate."""
    _control(run_id, "approve")


@app.command()
def abort(run_id: str = typer.Argument(..., help="The run to abort.")) -> None:
    """Abort a run: DNS returns to the last state that passed its health gate."""
    _control(run_id, "abort")


@app.command()
def pause(run_id: str = typer.Argument(..., help="The run whose traffic shift holds.")) -> None:
    """Hold a traffic shift at the next step boundary."""
    _control(run_id, "pause")


@app.command()
def resume(run_id: str = typer.Argument(..., help="The paused run.")) -> None:
    """Resume a paused traffic shift."""
    _control(run_id, "resume")


@app.command()
def demo(
    speed: float = typer.Option(None, min=1.0, help="Rehearsal speed (default 180, or DRPILOT_DEMO_SPEED)."),
    keep: bool = typer.Option(False, "--keep", help="Leave the sandbox up to explore afterwards, until Ctrl-C."),
    runbook: Path = typer.Option(None, "--runbook", help="Rehearse this runbook the same way (default runbooks/llm-inference.yaml)."),
    state_dir: Path = typer.Option(None, "--state-dir", help="Where the twin, the logs and the reports go (default .sandbox/demo-RUNBOOK)."),
) -> None:
    """The story on a simulated twin: region down, alert, approved failover, a failback that rolls back, one that completes."""
    from drpilot import demo as story

    args = [*(["--speed", f"{speed:g}"] if speed else []), *(["--keep"] if keep else []),
            *(["--runbook", str(runbook)] if runbook else []), *(["--state-dir", str(state_dir)] if state_dir else [])]
    raise typer.Exit(story.main(args))


@app.command()
def worker() -> None:
    """Run a worker: executes failover / failback runs from the task queue until SIGTERM."""
    import asyncio

    from drpilot.health import ListenError
    from drpilot.logs import configure
    from drpilot.temporal import TemporalUnavailable
    from drpilot.worker import run_worker

    configure()
    try:
        asyncio.run(run_worker(_settings()))
    except (TemporalUnavailable, ListenError) as exc:
        err.print(f"error: {exc}", markup=False)
        raise typer.Exit(1) from None

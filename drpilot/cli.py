"""The on-call command line: `drpilot ...`. Every user mistake is one clear message and a
non-zero exit, never a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from drpilot import __version__
from drpilot.durations import format_duration
from drpilot.loader import RunbookError, load_runbook
from drpilot.runbook import Runbook
from drpilot.sandbox.cli import app as sandbox_app

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

out = Console()
err = Console(stderr=True, highlight=False, soft_wrap=True)


def _version(value: bool) -> None:
    if value:
        out.print(f"drpilot {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
) -> None:
    """drpilot moves serving between regions safely: see `drpilot COMMAND --help`."""


def load_or_exit(path: Path) -> Runbook:
    """The front door: a runbook that loads, or its problems on stderr and exit 1."""
    try:
        return load_runbook(path)
    except RunbookError as exc:
        for problem in exc.problems:
            err.print(str(problem), markup=False)
        raise typer.Exit(1) from None


@runbook_app.command("validate")
def validate(files: list[Path] = typer.Argument(..., help="Runbook YAML files.", metavar="FILE...")) -> None:
    """Check runbooks; print every problem as FILE:LINE:COL: field: message. Exit 1 if any."""
    failed = 0
    for path in files:
        try:
            load_runbook(path)
        except RunbookError as exc:
            failed += 1
            for problem in exc.problems:
                err.print(str(problem), markup=False)
            continue
        out.print(f"{path}: ok", markup=False)
    if failed:
        err.print(f"{failed} of {len(files)} runbook(s) invalid", markup=False)
        raise typer.Exit(1)


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

"""`drpilot runbook validate | schema | show | plan`: runbooks without Temporal."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table
from temporalio.exceptions import ApplicationError

from drpilot.cli.shared import out, print_table, settings_or_exit
from drpilot.cli.terminal import document_commands, err, load_or_exit
from drpilot.domain.durations import format_duration
from drpilot.domain.loader import load_runbook
from drpilot.domain.runbook import Runbook

app = typer.Typer(help="Validate, inspect and export runbooks.", no_args_is_help=True)


def runbook_schema() -> dict:
    document = Runbook.model_json_schema()
    document["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    document["title"] = "drpilot runbook (drpilot/v1)"
    return document


document_commands(
    app, load=load_runbook, schema=runbook_schema, noun="runbook", files_help="Runbook YAML files.",
    validate_help="Check runbooks; print every problem as FILE:LINE:COL: field: message. Exit 1 if any.",
    schema_help="Print the runbook JSON Schema (for editors; committed as runbooks/schema.json).",
)


@app.command("show")
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
    print_table(regions)
    records = Table("record", "type", "ttl", "targets", title=f"DNS ({spec.dns.provider.value}, zone {spec.dns.zone})")
    for record in spec.dns.records:
        records.add_row(record.name, record.type.value, f"{record.ttl}s", "\n".join(f"{r}: {t}" for r, t in record.targets.items()))
    print_table(records)
    if spec.workloads:
        workloads = Table("namespace/deployment", "active", "standby", "regions", title="Workloads")
        for w in spec.workloads:
            workloads.add_row(f"{w.namespace}/{w.deployment}", str(w.replicas.active), str(w.replicas.standby), ", ".join(w.regions or ["all"]))
        print_table(workloads)
    if spec.models:
        models = Table("model", "version", "archive", title="Models")
        for m in spec.models:
            models.add_row(m.name, m.version, m.archive or "-")
        print_table(models)
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


@app.command("plan")
def plan(
    file: Path = typer.Argument(..., help="Runbook YAML file."),
    action: str = typer.Option(..., "--action", help="failover or failback."),
    from_region: str = typer.Option(None, "--from", help="failover: the failed region."),
    to: list[str] = typer.Option(None, "--to", help="failover: target region(s); failback: the region to return to."),
) -> None:
    """Dry run: read live state and print the changes a run would make. Changes nothing."""
    from drpilot.frontdoor.dry_run import plan_failback, plan_failover
    from workflows.plan import PlanError

    rb = load_or_exit(file)
    settings = settings_or_exit()
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

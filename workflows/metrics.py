"""drpilot's own run metrics, recorded once per finished run from its RunResult.

Recorded through the workflow metric meter: it records nothing while a workflow replays and
adds no command to the history, so calling it changes no run's command sequence. The
worker's Temporal runtime exports these with the SDK's own metrics (drpilot/frontdoor/health.py), as
Prometheus names with the `_total` / `_seconds` conventions (infra/prometheus uses them).
Runbook, action and outcome are labels; phase names and statuses are a small fixed set.
"""

from __future__ import annotations

from temporalio import workflow

from activities.contracts import ReadinessResult
from workflows.types import RunResult

RUNS = "drpilot_runs"
PHASE_SECONDS = "drpilot_phase_duration_seconds"
DNS_CHANGES = "drpilot_dns_changes"
GATES = "drpilot_health_gates"
RTO_SECONDS = "drpilot_rto_seconds"
RTO_OBJECTIVE_SECONDS = "drpilot_rto_objective_seconds"
RTO_MISSED = "drpilot_rto_missed"
READY = "drpilot_ready"

# The phases whose outcome is a health gate's verdict (workflows/failover.py, failback.py).
GATE_PHASES = frozenset({"health-gate", "post-switch-validation", "recheck-failed-region"})


def record_result(result: RunResult) -> None:
    """Counts the run by status, times its phases, counts its DNS changes and gate results,
    and sets its RTO beside the objective (unscaled: a rehearsal's RTO as it would be)."""
    meter = workflow.metric_meter().with_additional_attributes(
        {"runbook": result.runbook, "action": result.action}
    )
    meter.create_counter(RUNS, "Runs finished, by status").add(1, {"status": result.status})
    phases = meter.create_histogram_float(
        PHASE_SECONDS, "Phase durations of finished runs (unscaled)", "s"
    )
    gates = meter.create_counter(GATES, "Health gate phases, by outcome")
    for phase in result.phases:
        if phase.seconds is not None:
            phases.record(phase.seconds * result.speed, {"phase": phase.name, "outcome": phase.outcome})
        if phase.name in GATE_PHASES and phase.outcome != "running":
            gates.add(1, {"phase": phase.name, "outcome": phase.outcome})
    meter.create_counter(DNS_CHANGES, "DNS weight changes applied").add(len(result.weights_applied))
    meter.create_gauge_float(
        RTO_OBJECTIVE_SECONDS, "The runbook's RTO objective", "s"
    ).set(result.objective_rto_seconds)
    rto = result.rto_seconds_unscaled
    if rto is None and result.rto_seconds is not None:
        rto = result.rto_seconds * result.speed
    if rto is not None:
        meter.create_gauge_float(RTO_SECONDS, "RTO the last run achieved (unscaled)", "s").set(rto)
    missed = meter.create_counter(RTO_MISSED, "Failovers that missed the RTO objective")
    missed.add(1 if result.rto_met is False else 0)


def record_readiness(result: ReadinessResult) -> None:
    """The latest readiness verdict per runbook and check: 1 ready, 0 not (alert on 0)."""
    meter = workflow.metric_meter().with_additional_attributes({"runbook": result.runbook})
    gauge = meter.create_gauge(READY, "1 when the last readiness check found this ready, else 0")
    gauge.set(1 if result.ready else 0, {"check": "all"})
    for check in result.checks:
        gauge.set(1 if check.ready else 0, {"check": check.name})

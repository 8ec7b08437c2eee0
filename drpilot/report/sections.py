"""The report's content, format-free: what each section says, computed once from a run's
facts so the HTML and the Markdown say the same thing."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from activities import contracts as c
from drpilot.report.facts import RunFacts, Step
from workflows.types import FailoverInput


def weights_text(weights: dict[str, int]) -> str:
    return ", ".join(f"{region} {weight}%" for region, weight in weights.items()) or "-"


def seconds_text(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, rest = divmod(seconds, 60)
    return f"{int(minutes)}m{rest:04.1f}s"


@dataclass(frozen=True)
class Bar:
    """One row of the Gantt timeline: a phase, or a step inside it."""

    label: str
    start: float  # seconds from the run's start
    seconds: float | None  # None: still running when the run ended (or never closed)
    outcome: str
    depth: int  # 0 phase, 1 step (or a cold start), 2 a cold start's stage
    detail: str = ""


@dataclass(frozen=True)
class ShiftStep:
    name: str  # "shift 50%"
    at: float  # seconds from the run's start when it was judged
    weights: dict[str, int]
    analyses: list[c.AnalyseResult]
    outcome: str


@dataclass(frozen=True)
class Gate:
    phase: str
    kind: str  # health gate, fresh check, analysis, warm-up
    region: str
    passed: bool
    summary: str
    evidence: list[c.CheckEvidence] = field(default_factory=list)


@dataclass(frozen=True)
class Change:
    what: str  # DNS, replicas, Velero restore, archive restore, artifact sync, rollout restart
    where: str
    before: str
    after: str
    at: datetime | None = None


@dataclass
class Report:
    facts: RunFacts
    title: str
    status: str
    headline: list[tuple[str, str]]
    rto: list[tuple[str, str]]
    trigger: list[tuple[str, str]]
    bars: list[Bar]
    span: float  # seconds the timeline covers
    weights: list[tuple[float, dict[str, int]]]  # (seconds from start, weights) from the start on
    shift: list[ShiftStep]
    gates: list[Gate]
    changes: list[Change]
    messages: list[str]


def build(facts: RunFacts) -> Report:
    result = facts.result
    start = facts.started_at
    end = (result.ended_at if result and result.ended_at else None) or facts.closed_at or _last_seen(facts)

    def offset(at: datetime) -> float:
        return max((at - start).total_seconds(), 0.0)

    status = result.status if result else (facts.closed or "running")
    return Report(
        facts=facts,
        title=f"{facts.action} of {facts.request.runbook.name}",
        status=status,
        headline=_headline(facts, status, end),
        rto=_rto(facts),
        trigger=_trigger(facts),
        bars=_bars(facts, offset),
        span=max(offset(end), 0.001),
        weights=_weights(facts, offset),
        shift=_shift(facts, offset),
        gates=_gates(facts),
        changes=_changes(facts),
        messages=list(result.messages) if result else [],
    )


def _last_seen(facts: RunFacts) -> datetime:
    ends = [s.ended or s.started for s in facts.steps]
    return max([facts.started_at, *ends])


def _headline(facts: RunFacts, status: str, end: datetime) -> list[tuple[str, str]]:
    request = facts.request
    rows = [
        ("run", f"{facts.workflow_id} (Temporal run {facts.temporal_run_id})"),
        ("runbook", request.runbook.name + (f", owner {request.runbook.metadata.owner}" if request.runbook.metadata.owner else "")),
        ("status", status),
        ("started", facts.started_at.strftime("%Y-%m-%d %H:%M:%S UTC")),
        ("ended", end.strftime("%Y-%m-%d %H:%M:%S UTC") if facts.closed_at else "still running"),
        ("duration", seconds_text((end - facts.started_at).total_seconds())),
    ]
    if isinstance(request, FailoverInput):
        targets = ", ".join(request.target_regions or []) or "the runbook's default targets"
        rows.append(("request", f"away from {request.failed_region} to {targets}, {request.strategy}"))
    else:
        rows.append(("request", f"back to {request.original_region}"))
    if facts.speed != 1:
        rows.append(("speed", f"rehearsal at {facts.speed:g}x: every wait was divided by {facts.speed:g} "
                              "(a sandbox run; times below are real seconds)"))
    if facts.result:
        rows.append(("DNS at the end", weights_text(facts.result.final_state.dns)))
    return rows


def _rto(facts: RunFacts) -> list[tuple[str, str]]:
    result = facts.result
    if result is None:
        return [("RTO", "the run has not ended")]
    objective = result.objective_rto_seconds
    if result.rto_seconds is None:
        return [("RTO", f"not reached (the run ended {result.status})"), ("objective", seconds_text(objective))]
    if result.action == "failback":
        return [("all traffic home after", seconds_text(result.rto_seconds)),
                ("objective", f"{seconds_text(objective)} (a failback is paced by its bakes: not judged against it)"),
                *_projection(result)]
    rows = [("RTO measured", seconds_text(result.rto_seconds)), ("objective", seconds_text(objective))]
    rows += _projection(result)
    # Fields a newer result may carry about its RTO, shown as they are.
    known = {"rto_seconds", "rto_seconds_unscaled"}
    for name, value in result.model_dump().items():
        if name.startswith("rto_") and name not in known and value not in (None, {}, []):
            rows.append((name.removeprefix("rto_").replace("_", " "), _plain(value)))
    verdict = "met" if result.rto_met else "MISSED"
    rows.append(("verdict", f"{verdict} (on the projection to speed 1)" if result.speed != 1 else verdict))
    said = [m for m in result.messages if m.startswith("RTO ")]
    if said:
        rows.append(("the run said", said[-1]))
    return rows


def _projection(result) -> list[tuple[str, str]]:
    """At rehearsal speed: what the RTO stands for at speed 1, and what it is made of."""
    if result.speed == 1:
        return []
    p = result.projection
    if p is None:  # a result from before projections
        unscaled = result.rto_seconds_unscaled if result.rto_seconds_unscaled is not None else result.rto_seconds * result.speed
        return [("at speed 1", f"at most {seconds_text(unscaled)} (every second measured times {result.speed:g}: "
                               "an upper bound, fixed costs do not shrink with speed)")]
    parts = ", ".join(
        f"{kind} {seconds_text(seconds)} (here {seconds_text(p.waits_measured.get(kind, 0.0))})"
        for kind, seconds in sorted(p.waits.items(), key=lambda kv: -kv[1])
    )
    return [
        ("projected at speed 1", f"{seconds_text(p.projected_seconds)} ± {seconds_text(p.uncertainty_seconds)} "
                                 "(a projection, not a measurement)"),
        ("scaled waits, unscaled", parts or "none on the critical path"),
        ("everything else, as measured", f"{seconds_text(p.other_seconds)} (Temporal, requests, approvals)"),
    ]


def _plain(value: object) -> str:
    if isinstance(value, float):
        return seconds_text(value)
    if isinstance(value, dict):
        return ", ".join(f"{k}: {_plain(v)}" for k, v in value.items())
    if isinstance(value, list):
        return "; ".join(_plain(v) for v in value)
    return str(value)


def _trigger(facts: RunFacts) -> list[tuple[str, str]]:
    request = facts.request
    who = {"cli": "an operator, from the CLI", "alert": "an alert, through the Alertmanager webhook",
           "drill": "a scheduled drill", "console": "a person, from the web console"}.get(request.trigger, request.trigger)
    rows = [("triggered by", f"{who}" + (f" ({request.requested_by})" if request.requested_by else ""))]
    if request.reason:
        rows.append(("reason", request.reason))
    if request.override_safety_rules:
        rows.append(("break-glass", f"safety rule(s) {', '.join(request.override_safety_rules)} overridden "
                                    "(--override-safety-rule)"))
    approval = next((p for p in facts.phases if p.name == "approval"), None)
    if approval is None:
        rows.append(("approval", "not recorded"))
    elif approval.outcome == "skipped":
        rows.append(("approval", f"not required: {approval.detail}"))
    else:
        waited = f" after waiting {seconds_text(approval.seconds)}" if approval.seconds is not None else ""
        rows.append(("approval", f"{approval.detail or approval.outcome}{waited}"))
    for asked in facts.requests:
        at = asked.at.strftime("%H:%M:%S")
        if asked.name == "alert_resolved":
            rows.append(("alert resolved", f"{asked.text} at {at} (via {asked.by or 'webhook'})"))
        else:
            text = f" ({asked.text})" if asked.text else ""
            rows.append((asked.name, f"by {asked.by or 'unknown'} at {at} UTC{text}"))
    return rows


def _bars(facts: RunFacts, offset) -> list[Bar]:
    bars: list[Bar] = []
    steps_of: dict[str, list[Step]] = {}
    for step in facts.steps:
        steps_of.setdefault(step.phase, []).append(step)
    seen: set[str] = set()
    for phase in facts.phases:
        bars.append(Bar(phase.name, offset(phase.started_at), phase.seconds, phase.outcome, 0, phase.detail))
        if phase.name in seen:
            continue  # a phase entered twice (a re-gate) lists its steps once, under the first
        seen.add(phase.name)
        bars += [_step_bar(s, offset) for s in steps_of.get(phase.name, [])]
        if phase.name == "prepare":
            bars += _cold_start_bars(facts, offset)
    loose = steps_of.get("", [])
    if loose:
        first = min(offset(s.started) for s in loose)
        last = max(offset(s.ended or s.started) for s in loose)
        bars.append(Bar("final state read", first, last - first, "ok", 0, "DNS and replicas read for the result"))
        bars += [_step_bar(s, offset) for s in loose]
    return bars


def _cold_start_bars(facts: RunFacts, offset) -> list[Bar]:
    """Each scale-up's cold start under prepare: a row per workload, then one per stage, each
    from the scale request to when its last pod got there (a stage not seen: no bar, said)."""
    bars: list[Bar] = []
    speed = facts.speed
    for cold in facts.result.cold_starts if facts.result else []:
        if cold.requested_at is None:
            continue
        start = offset(datetime.fromtimestamp(cold.requested_at, UTC))
        seen = [s for _, s in cold.stages() if s is not None]
        last = max((s for n in cold.STAGES if (s := cold.unscaled(n, speed)) is not None), default=None)
        at_one = f" (~{last:.0f}s at speed 1)" if speed != 1 and last is not None else ""
        bars.append(Bar(f"cold start {cold.region} {cold.workload}", start, max(seen, default=None), "ok", 1,
                        f"{cold.pods} pods{at_one}"))
        for stage, seconds in cold.stages():
            detail = f"+{seconds:.1f}s after the scale request" if seconds is not None else "not seen"
            bars.append(Bar(stage, start, seconds if seconds is not None else 0.0,
                            "ok" if seconds is not None else "skipped", 2, detail))
    return bars


def _step_bar(step: Step, offset) -> Bar:
    label = step.name + (f" {step.region}" if step.region else "")
    return Bar(label, offset(step.started), step.seconds, step.outcome, 1, describe(step))


# What one line says of each kind of answer (the first kind the answer is wins).
_ANSWER_TEXT: list[tuple[type, Callable[[Any, Step], str]]] = [
    (c.DnsApplyResult, lambda a, step: f"{weights_text(a.weights)}: {a.status}"),
    (c.DnsState, lambda a, step: weights_text(a.weights())),
    (c.ReplicaState, lambda a, step: ", ".join(f"{d.namespace}/{d.name} {d.ready}/{d.replicas}" for d in a.deployments)),
    (c.ScaleResult, lambda a, step: f"to {step.request.to if step.request else '?'}; changed {', '.join(a.changed) or 'nothing'}"),
    (c.RolloutRestartResult, lambda a, step: f"restarted {', '.join(a.restarted) or 'nothing (already)'}"),
    (c.VerifyResult, lambda a, step: f"{a.model}: {a.files} files, {len(a.problems)} problem(s)"),
    (c.RestoreResult, lambda a, step: f"{a.model}: {len(a.restored)} file(s) restored, tier {a.tier}"),
    (c.SyncResult, lambda a, step: f"{a.verify.model}: {len(a.copied)} copied, {a.unchanged} unchanged"),
    (c.VeleroRestoreResult, lambda a, step: f"{a.name}: {a.phase}" + (f" from {a.backup}" if a.backup else "")),
    (c.VeleroBackupInfo, lambda a, step: f"{a.name}: {a.phase}"),
    (c.WarmupResult, lambda a, step: f"{a.requests} requests, {a.failures} failed, p99 {a.p99_ms:.0f}ms"),
    (c.HealthResult, lambda a, step: f"{'passed' if a.passed else 'FAILED'} after {a.rounds} round(s)"),
    (c.AnalyseResult, lambda a, step: f"{a.requests} requests, error rate {a.error_rate:.2%}, p99 {a.p99_ms:.0f}ms: "
                                       f"{'healthy' if a.healthy else 'DEGRADED'}"),
    (c.NotifyResult, lambda a, step: f"{'delivered' if a.delivered else 'not delivered'} to {a.target}"),
]


def describe(step: Step) -> str:
    """One line saying what the step found or did."""
    if step.outcome not in ("ok", "running"):
        return f"{step.outcome}: {step.error}" if step.error else step.outcome
    prefix = f"attempt {step.attempts}: " if step.attempts > 1 else ""
    return prefix + next((say(step.answer, step) for kind, say in _ANSWER_TEXT if isinstance(step.answer, kind)), "")


def _weights(facts: RunFacts, offset) -> list[tuple[float, dict[str, int]]]:
    result = facts.result
    if result is None:  # still running: the weights its DNS reads and changes have answered so far
        return _weights_so_far(facts, offset)
    before = result.before_state.dns if result.before_state else {}
    first = result.dns_changes[0].before if result.dns_changes else before
    points = [(0.0, dict(first or before))] if (first or before) else []
    points += [(offset(change.at), dict(change.after)) for change in result.dns_changes]
    return points


def _weights_so_far(facts: RunFacts, offset) -> list[tuple[float, dict[str, int]]]:
    """A running run's weights from its history: the first DNS read, then each change applied
    (the result's dns_changes say the same once it ends)."""
    read = next((s.answer for s in facts.activities(c.DNS_READ) if isinstance(s.answer, c.DnsState)), None)
    points = [(0.0, dict(read.weights()))] if read is not None else []
    points += [(offset(s.ended), dict(s.answer.weights)) for s in facts.activities(c.DNS_APPLY)
               if isinstance(s.answer, c.DnsApplyResult) and s.ended is not None]
    return points


def _shift(facts: RunFacts, offset) -> list[ShiftStep]:
    steps: list[ShiftStep] = []
    result = facts.result
    changes = result.dns_changes if result else []
    for phase in facts.phases:
        if not phase.name.startswith("shift "):
            continue
        analyses = [s for s in facts.activities("probes.analyse") if s.phase == phase.name]
        moved = [ch for ch in changes if ch.phase == phase.name]
        weights = dict(moved[0].after) if moved else {}
        at = max((s.ended or s.started for s in analyses), default=phase.ended_at or phase.started_at)
        steps.append(ShiftStep(phase.name, offset(at), weights, [s.answer for s in analyses], phase.outcome))
    return steps


def _gates(facts: RunFacts) -> list[Gate]:
    gates: list[Gate] = []
    for step in facts.steps:
        a = step.answer
        if isinstance(a, c.HealthResult):
            kind = "fresh check" if step.request is not None and step.request.rounds else "health gate"
            summary = f"{'passed' if a.passed else 'FAILED'} after {a.rounds} round(s), {a.seconds:.1f}s"
            gates.append(Gate(step.phase, kind, a.region, a.passed, summary + (f": {a.summary}" if a.summary else ""), a.evidence))
        elif isinstance(a, c.AnalyseResult):
            summary = f"{a.requests} requests, error rate {a.error_rate:.2%}, p99 {a.p99_ms:.0f}ms"
            gates.append(Gate(step.phase, "analysis", a.region, a.healthy, summary, a.evidence))
        elif isinstance(a, c.WarmupResult):
            summary = f"{a.requests} requests, {a.failures} failed, p50 {a.p50_ms:.0f}ms, p99 {a.p99_ms:.0f}ms"
            evidence = [j.evidence(a.region) for j in a.judged]
            gates.append(Gate(step.phase, "warm-up", a.region, a.failures == 0, summary, evidence))
    return gates


def _changes(facts: RunFacts) -> list[Change]:
    changes: list[Change] = []
    result = facts.result
    if result:
        for ch in result.dns_changes:
            changes.append(Change("DNS", ch.phase, weights_text(ch.before), f"{weights_text(ch.after)} ({ch.status})", ch.at))
        before = result.before_state.replicas if result.before_state else {}
        after = result.final_state.replicas
        for region in sorted(set(before) | set(after)):
            for name in sorted(set(before.get(region, {})) | set(after.get(region, {}))):
                was, now = before.get(region, {}).get(name), after.get(region, {}).get(name)
                if was != now:
                    changes.append(Change("replicas", f"{region} {name}", _count(was), _count(now)))
    for step in facts.activities("kube.scale"):
        if step.answer.changed:
            counts = ", ".join(f"{d.namespace}/{d.name} {d.ready}/{d.replicas} ready" for d in step.answer.deployments
                               if f"{d.namespace}/{d.name}" in step.answer.changed)
            changes.append(Change("scale", f"{step.region} ({step.phase})", "", counts, step.ended))
    for step in facts.activities("kube.rollout_restart"):
        if step.answer.restarted:
            changes.append(Change("rollout restart", f"{step.region} ({step.phase})", "pods from before the repair",
                                  ", ".join(step.answer.restarted), step.ended))
    for step in facts.activities("velero.restore"):
        a = step.answer
        backup = a.backup or (step.request.runbook.spec.backups.velero.backup if step.request and step.request.runbook.spec.backups.velero else "")
        changes.append(Change("Velero restore", f"{step.region} ({step.phase})", f"backup {backup}".strip(),
                              f"{a.name}: {a.phase}, {a.errors} error(s), {a.warnings} warning(s)", step.ended))
    for step in facts.activities("artifacts.restore_from_archive"):
        a = step.answer
        if a.restored:
            changes.append(Change("archive restore", f"{a.region} {a.model}", f"{len(a.restored)} file(s) missing or corrupt",
                                  f"restored ({a.tier}); {len(a.verify.problems)} problem(s) left", step.ended))
    for step in facts.activities("artifacts.sync"):
        a = step.answer
        if a.copied:
            source = step.request.source_region if step.request else "?"
            changes.append(Change("artifact sync", f"{source} -> {step.region} {a.verify.model}",
                                  f"{len(a.copied)} file(s) differing", f"copied; {len(a.verify.problems)} problem(s) left", step.ended))
    return changes


def _count(n: int | None) -> str:
    return "-" if n is None else str(n)

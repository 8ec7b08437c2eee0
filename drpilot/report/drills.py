"""A period's drills as the document DR-testing rules ask for (DORA's yearly tests of
switchover to redundant capacity, SOC 2 A1.3, ISO 22301 8.5): what was exercised, the
outcomes, the RTO against the objective, who requested and who approved, what deviated and
what was done about it. Read from the drills' evidence packs (`drpilot drill report`), as
Markdown or one self-contained HTML file (no script, nothing fetched)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from html import escape

from drpilot.report.html import STYLE
from workflows.types import DrillResult


@dataclass(frozen=True)
class Row:
    """One drill, as the document states it: every value already text."""

    started: str
    exercised: str
    outcome: str
    rto: str
    people: str
    deviations: list[str]
    done: list[str]
    provenance: str


def rows(drills: list[DrillResult]) -> list[Row]:
    return [_row(d) for d in drills]


def _row(d: DrillResult) -> Row:
    rto = "not measured"
    if d.rto_seconds is not None:
        at_one = d.rto_seconds_unscaled if d.rto_seconds_unscaled is not None else d.rto_seconds
        verdict = "met" if d.rto_met else "MISSED" if d.rto_met is False else "not judged"
        rto = f"{at_one:.0f}s vs objective {d.objective_rto_seconds:.0f}s: {verdict}"
        if d.speed != 1:
            rto += f" (a rehearsal at speed {d.speed:g}; the RTO at speed 1 is projected)"
    people = f"requested by {d.requested_by or d.scheduled_by or 'not recorded'}"
    people += "; " + ("; ".join(d.approvals) if d.approvals else "no approval given or needed")
    deviations = [f"{p.name}: {p.outcome}{': ' + p.detail if p.detail else ''}" for p in d.phases
                  if p.outcome not in ("ok", "running", "skipped")]
    deviations += [f"blocking alert firing: {a}" for a in d.firing_alerts]
    if d.reason and d.status != "completed":
        deviations.append(f"why: {d.reason}")
    # What the drill did about a deviation: its failback or cleanup, and any compensation.
    done = [f"{p.name}: {p.detail}" for p in d.phases if p.name in ("cleanup", "failback") and p.outcome == "ok" and p.detail]
    done += [c for c in d.changes if "compensation" in c]
    provenance = f"runbook {d.runbook_digest or 'digest not recorded'}, drpilot {d.drpilot_version or 'version not recorded'}"
    return Row(
        started=f"{d.started_at:%Y-%m-%d %H:%M}Z", exercised=f"{d.mode} failover away from {d.from_region}, soak, failback",
        outcome=d.status, rto=rto, people=people, deviations=deviations,
        done=(done or ["nothing recorded"]) if deviations else ["nothing needed"],
        provenance=provenance,
    )


def _summary(runbook: str, since: datetime, drills: list[DrillResult]) -> list[tuple[str, str]]:
    counts: dict[str, int] = {}
    for d in drills:
        counts[d.status] = counts.get(d.status, 0) + 1
    judged = [d for d in drills if d.rto_met is not None]
    return [
        ("runbook", runbook), ("period", f"since {since:%Y-%m-%d} ({len(drills)} drill(s))"),
        ("outcomes", ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "no drill in the period"),
        ("RTO objective", f"met in {sum(1 for d in judged if d.rto_met)} of {len(judged)} measured drill(s)"),
    ]


HEAD = ["started (UTC)", "exercised", "outcome", "RTO", "who", "deviations", "what was done", "runbook and drpilot"]


def markdown(runbook: str, since: datetime, drills: list[DrillResult]) -> str:
    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    lines = [f"# Drill report: {runbook}", ""]
    lines += [f"- **{k}**: {cell(v)}" for k, v in _summary(runbook, since, drills)]
    lines += ["", "| " + " | ".join(HEAD) + " |", "|" + " --- |" * len(HEAD)]
    for r in rows(drills):
        cells = [r.started, r.exercised, r.outcome, r.rto, r.people, "; ".join(r.deviations) or "none", "; ".join(r.done), r.provenance]
        lines.append("| " + " | ".join(cell(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def html(runbook: str, since: datetime, drills: list[DrillResult]) -> str:
    facts = "".join(f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in _summary(runbook, since, drills))
    body = "".join(
        "<tr>" + "".join(f"<td>{escape(c)}</td>" for c in (r.started, r.exercised, r.outcome, r.rto, r.people)) + "<td>"
        + ("<br>".join(escape(x) for x in r.deviations) or "none") + "</td><td>" + "<br>".join(escape(x) for x in r.done)
        + f"</td><td>{escape(r.provenance)}</td></tr>"
        for r in rows(drills)
    )
    title = escape(f"drpilot drill report: {runbook}")
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{title}</title><style>{STYLE}</style></head>'
            f"<body>\n<h1>{title}</h1>\n<table class=\"facts\">{facts}</table>\n<h2>Drills</h2>\n<table><tr>"
            + "".join(f"<th>{escape(h)}</th>" for h in HEAD) + f"</tr>{body}</table>\n</body></html>\n")


FORMATS = {"md": markdown, "html": html}

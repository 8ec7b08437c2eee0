"""The report as one self-contained HTML file: inline CSS and SVG, no script, nothing fetched."""

from __future__ import annotations

from html import escape

from drpilot.report.charts import COLOURS, timeline, weights_chart
from drpilot.report.sections import Report, seconds_text, weights_text

STYLE = """
body{font-family:"DejaVu Sans",Arial,sans-serif;margin:24px;color:#212121;max-width:1040px}
h1{font-size:22px;margin-bottom:4px}h2{font-size:17px;margin-top:28px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:8px 0;font-size:13px}td,th{border:1px solid #ddd;padding:3px 8px;
text-align:left;vertical-align:top}th{background:#f5f5f5}table.facts th{width:190px}
.status{display:inline-block;padding:2px 10px;border-radius:4px;color:#fff;font-weight:bold}
.pass{color:#2e7d32}.fail{color:#c62828;font-weight:bold}.note{color:#616161;font-size:13px}
svg{max-width:100%;height:auto;border:1px solid #eee}ul{font-size:13px}
"""


def render(report: Report) -> str:
    colour = COLOURS.get(report.status, "#616161")
    body = [
        f"<h1>{escape(report.title)} <span class=\"status\" style=\"background:{colour}\">{escape(report.status)}</span></h1>",
        sections(report),
    ]
    title = escape(f"drpilot report: {report.title} ({report.status})")
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
            f"<style>{STYLE}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")


def sections(report: Report) -> str:
    """Everything under the title, as HTML: the report file's body and the console's run page."""
    body = [
        _facts(report.headline),
        "<h2>RTO</h2>", _facts(report.rto),
        "<h2>Trigger and approval</h2>", _facts(report.trigger),
        "<h2>Timeline</h2>",
        '<p class="note">Each phase (bold) and the steps inside it: activities and durable timers, from the run\'s history. '
        "Hover a bar for its detail.</p>",
        timeline(report), _phase_table(report),
        "<h2>Traffic weights</h2>", weights_chart(report), _shift_table(report),
        "<h2>Gates and analyses</h2>", _gates(report),
        "<h2>Changes made</h2>", _changes(report),
        "<h2>Messages</h2>",
        "<ul>" + "".join(f"<li>{escape(m)}</li>" for m in report.messages) + "</ul>",
    ]
    return "\n".join(body)


def _facts(rows: list[tuple[str, str]]) -> str:
    cells = "".join(f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in rows)
    return f'<table class="facts">{cells}</table>'


def _verdict(passed: bool) -> str:
    return '<span class="pass">pass</span>' if passed else '<span class="fail">FAIL</span>'


def _table(head: list[str], rows: list[list[str]]) -> str:
    """Cells are HTML already (escaped by the caller where they hold text)."""
    header = "".join(f"<th>{h}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><tr>{header}</tr>{body}</table>"


def _phase_table(report: Report) -> str:
    return _table(["phase", "at", "took", "outcome", "detail"], [
        [escape(b.label), seconds_text(b.start), seconds_text(b.seconds), escape(b.outcome), escape(b.detail)]
        for b in report.bars if b.depth == 0
    ])


def _shift_table(report: Report) -> str:
    if not report.shift:
        return '<p class="note">No weighted shift in this run: DNS moved in one change.</p>'
    rows = []
    for step in report.shift:
        numbers = "<br>".join(
            f"{escape(a.region)}: {a.requests} requests, error rate {a.error_rate:.2%}, p99 {a.p99_ms:.0f}ms "
            + _verdict(a.healthy) for a in step.analyses
        ) or "not analysed"
        rows.append([escape(step.name), seconds_text(step.at), escape(weights_text(step.weights)), numbers, escape(step.outcome)])
    return _table(["step", "judged at", "weights", "analysis", "outcome"], rows)


def _gates(report: Report) -> str:
    if not report.gates:
        return '<p class="note">No gate ran.</p>'
    return _table(["phase", "check", "region", "verdict", "evidence"], [
        [escape(gate.phase), escape(gate.kind), escape(gate.region), f"{_verdict(gate.passed)} {escape(gate.summary)}",
         "<br>".join(f"{escape(e.check)}: {_verdict(e.passed)} {escape(e.observed)}" for e in gate.evidence)]
        for gate in report.gates
    ])


def _changes(report: Report) -> str:
    if not report.changes:
        return '<p class="note">Nothing was changed.</p>'
    return _table(["what", "where", "before", "after", "at (UTC)"], [
        [escape(ch.what), escape(ch.where), escape(ch.before), escape(ch.after), ch.at.strftime("%H:%M:%S") if ch.at else ""]
        for ch in report.changes
    ])

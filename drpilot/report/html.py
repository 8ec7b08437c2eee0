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
    title = escape(f"drpilot report: {report.title} ({report.status})")
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
            f"<style>{STYLE}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")


def _facts(rows: list[tuple[str, str]]) -> str:
    cells = "".join(f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in rows)
    return f'<table class="facts">{cells}</table>'


def _verdict(passed: bool) -> str:
    return '<span class="pass">pass</span>' if passed else '<span class="fail">FAIL</span>'


def _phase_table(report: Report) -> str:
    rows = "".join(
        f"<tr><td>{escape(b.label)}</td><td>{seconds_text(b.start)}</td><td>{seconds_text(b.seconds)}</td>"
        f"<td>{escape(b.outcome)}</td><td>{escape(b.detail)}</td></tr>"
        for b in report.bars if b.depth == 0
    )
    return f"<table><tr><th>phase</th><th>at</th><th>took</th><th>outcome</th><th>detail</th></tr>{rows}</table>"


def _shift_table(report: Report) -> str:
    if not report.shift:
        return '<p class="note">No weighted shift in this run: DNS moved in one change.</p>'
    rows = []
    for step in report.shift:
        numbers = "<br>".join(
            f"{escape(a.region)}: {a.requests} requests, error rate {a.error_rate:.2%}, p99 {a.p99_ms:.0f}ms "
            + _verdict(a.healthy) for a in step.analyses
        ) or "not analysed"
        rows.append(f"<tr><td>{escape(step.name)}</td><td>{seconds_text(step.at)}</td><td>{escape(weights_text(step.weights))}</td>"
                    f"<td>{numbers}</td><td>{escape(step.outcome)}</td></tr>")
    return ("<table><tr><th>step</th><th>judged at</th><th>weights</th><th>analysis</th><th>outcome</th></tr>"
            + "".join(rows) + "</table>")


def _gates(report: Report) -> str:
    if not report.gates:
        return '<p class="note">No gate ran.</p>'
    rows = []
    for gate in report.gates:
        evidence = "<br>".join(f"{escape(e.check)}: {_verdict(e.passed)} {escape(e.observed)}" for e in gate.evidence)
        rows.append(f"<tr><td>{escape(gate.phase)}</td><td>{escape(gate.kind)}</td><td>{escape(gate.region)}</td>"
                    f"<td>{_verdict(gate.passed)} {escape(gate.summary)}</td><td>{evidence}</td></tr>")
    return ("<table><tr><th>phase</th><th>check</th><th>region</th><th>verdict</th><th>evidence</th></tr>"
            + "".join(rows) + "</table>")


def _changes(report: Report) -> str:
    if not report.changes:
        return '<p class="note">Nothing was changed.</p>'
    rows = "".join(
        f"<tr><td>{escape(ch.what)}</td><td>{escape(ch.where)}</td><td>{escape(ch.before)}</td><td>{escape(ch.after)}</td>"
        f"<td>{ch.at.strftime('%H:%M:%S') if ch.at else ''}</td></tr>"
        for ch in report.changes
    )
    return f"<table><tr><th>what</th><th>where</th><th>before</th><th>after</th><th>at (UTC)</th></tr>{rows}</table>"

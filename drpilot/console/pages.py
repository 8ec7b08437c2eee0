"""The console's HTML, drawn on the server: every runbook name, region, identity, message and
evidence string goes through `escape`. Fragments the live feed sends (the board's rows, a
run's panel) are drawn here too, so the one small script (static/console.js) only places them.
A run's timeline, weights and evidence come from the report's own renderer (drpilot/report)."""

from __future__ import annotations

from html import escape
from typing import Any

from drpilot import report
from drpilot.console.charts import rto_trend
from drpilot.domain.runbook import Runbook
from drpilot.frontdoor.drills import DRILL_ID_PREFIX
from workflows.types import Progress

STYLE = report.STYLE + """
nav{margin-bottom:16px;font-size:13px;color:#616161}nav a{margin-right:12px}
.ready{color:#2e7d32;font-weight:bold}.notready{color:#c62828;font-weight:bold}
.panel{border:1px solid #ddd;padding:8px 14px;margin:10px 0;background:#fafafa}
button{margin:4px 6px 4px 0}form{margin:6px 0;font-size:13px}input,select{margin-right:6px}
#said{font-weight:bold}
"""


def page(title: str, identity: str, body: str, *, feed: str = "") -> str:
    data = f' data-feed="{escape(feed)}"' if feed else ""
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{escape(title)} - drpilot console</title>'
        f'<style>{STYLE}</style><script src="/static/console.js" defer></script></head>'
        f'<body{data} data-me="{escape(identity)}">\n'
        f'<nav><a href="/">runbooks</a><a href="/drills">drills</a> signed in as <b>{escape(identity)}</b></nav>\n{body}\n</body></html>\n'
    )


def _weights(weights: dict[str, int]) -> str:
    return ", ".join(f"{escape(region)} {weight}%" for region, weight in sorted(weights.items())) or "none"


# ------------------------------------------------------------------------------ the board
def board_rows(rows: list[dict[str, Any]]) -> str:
    return "".join(_row(row) for row in rows) or '<tr><td colspan="5">No runbook you may view.</td></tr>'


READING = '<span class="note reading">reading…</span>'


def _row(row: dict[str, Any]) -> str:
    """A runbook's row; its slow facts read "reading…" until the board's first read of them
    ends (the live feed then sends the row again)."""
    run = _holding(row["run"])
    if row.get("reading"):
        return (f'<tr data-runbook="{escape(row["name"])}" data-reading><td><b>{escape(row["name"])}</b></td>'
                f"<td>{READING}</td><td>{run}</td><td>{READING}</td><td>{READING}</td></tr>")
    return (f'<tr data-runbook="{escape(row["name"])}"><td><b>{escape(row["name"])}</b></td>'
            f"<td>{_readiness(row['readiness'])}</td><td>{run}</td>"
            f"<td>{_dns(row['dns'])}</td><td>{_drill(row['last_drill'])}{rto_trend(row.get('drills'))}</td></tr>")


def _readiness(verdict: dict[str, Any] | None) -> str:
    if verdict is None:
        return '<span class="note">no verdict yet (drpilot readiness schedule)</span>'
    word = '<span class="ready">ready</span>' if verdict["ready"] else '<span class="notready">NOT READY</span>'
    checks = "".join(
        f'<li><span class="{"ready" if c["ready"] else "notready"}">{"ok" if c["ready"] else "no"}</span> '
        f"{escape(c['name'])}{': ' + escape(c['detail']) if c['detail'] else ''}</li>"
        for c in verdict["checks"]
    )
    return f"{word} since {escape(verdict['since'])}<ul>{checks}</ul>"


def _holding(run: dict[str, Any] | None) -> str:
    if run is None:
        return '<span class="note">no run</span>'
    where = escape(run["phase"]) + (f" {escape(run['step'])}" if run.get("step") else "")
    waiting = f", <b>waiting for {escape(run['waiting_for'])}</b>" if run.get("waiting_for") else ""
    who = f" by {escape(run['requested_by'])}" if run.get("requested_by") else ""
    # A drill is shown with its schedule and history on the drills page; a run has its own page.
    href = "/drills" if run["run_id"].startswith(DRILL_ID_PREFIX) else f"/runs/{escape(run['run_id'])}"
    return f'<a href="{href}">{escape(run["run_id"])}</a>: {where}{waiting}{who}'


def _dns(dns: dict[str, Any]) -> str:
    if "error" in dns:
        return f'<span class="notready">unreadable</span> <span class="note">{escape(dns["error"])}</span>'
    return _weights(dns["weights"])


def _drill(drill: dict[str, Any] | None) -> str:
    if drill is None:
        return '<span class="note">none recorded</span>'
    return f"{escape(drill['outcome'])} ({escape(drill['run_id'])})"


def home(identity: str, startable: list[Runbook], rows: str) -> str:
    starts = "".join(_start_forms(rb) for rb in startable)
    body = (
        "<h1>Runbooks</h1>"
        '<table><thead><tr><th>runbook</th><th>readiness</th><th>run</th><th>DNS now</th><th>last drill</th></tr></thead>'
        f'<tbody id="live">{rows}</tbody></table>'
        + (f'<h2>Start a run</h2><p class="note">Type the runbook\'s name to confirm.</p>{starts}' if starts else "")
        + '<p id="said" role="status"></p>'
    )
    return page("runbooks", identity, body, feed="/events/board")


def _start_forms(rb: Runbook) -> str:
    name = escape(rb.name)
    options = "".join(f'<option value="{escape(r)}">{escape(r)}</option>' for r in sorted(rb.spec.regions))
    return (
        f'<form class="start" data-action="failover" data-runbook="{name}"><b>{name}</b>: fail over away from '
        f'<select name="from">{options}</select><input name="confirm" placeholder="type {name}" autocomplete="off">'
        f'<button type="submit">Start failover</button></form>'
        f'<form class="start" data-action="failback" data-runbook="{name}"><b>{name}</b>: fail back to '
        f'<select name="to">{options}</select><input name="confirm" placeholder="type {name}" autocomplete="off">'
        f'<button type="submit">Start failback</button></form>'
        + (f'<form class="start" data-action="drill" data-runbook="{name}"><b>{name}</b>: drill away from '
           f'<select name="from">{options}</select><select name="mode"><option value="rehearsal">rehearsal</option>'
           f'<option value="live">live</option></select><input name="confirm" placeholder="type {name}" autocomplete="off">'
           f'<button type="submit">Start drill</button></form>' if rb.spec.drills is not None else "")
    )


# ------------------------------------------------------------------------------ one run
def panel(p: Progress) -> str:
    """Phase and step, what the run waits for, weights now and where it heads."""
    state = escape(p.status or p.state)
    rows = [("state", state), ("phase", escape(p.phase) + (f" {escape(p.step)}" if p.step else "")),
            ("DNS now", _weights(p.weights)), ("heading to", _weights(p.target_weights)),
            ("started by", escape(p.requested_by) or "not recorded")]
    if p.waiting_for:
        rows.append(("waiting for", f"<b>{escape(p.waiting_for)}</b>"))
    if p.approval_required:
        rows.append(("approval", escape(f"approved by {p.approved_by}") if p.approved_by else "required, not given"))
    if p.paused:
        rows.append(("paused", "yes"))
    cells = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows)
    return f'<table class="facts">{cells}</table>'


def run_page(identity: str, p: Progress, report_html: str) -> str:
    run_id = escape(p.run_id)
    buttons = "".join(
        f'<button data-do="{verb}" hidden>{label}</button>'
        for verb, label in (("approve", "Approve"), ("pause", "Pause"), ("resume", "Resume"))
    )
    body = (
        f"<h1>{escape(p.action)} of {escape(p.runbook)}</h1><p class=\"note\">{run_id}</p>"
        f'<div class="panel" id="live">{panel(p)}</div>'
        f'<div id="actions" data-run="{run_id}" data-runbook="{escape(p.runbook)}">{buttons}'
        f'<form class="abort" hidden><input name="confirm" placeholder="type {escape(p.runbook)} to abort" autocomplete="off">'
        '<button type="submit">Abort</button></form><p id="four-eyes" class="note" hidden>'
        "You started this run: another person must approve it (approvals.distinct_approver).</p>"
        '<p id="said" role="status"></p></div>'
        f'<div id="report">{report_html}</div>'
    )
    return page(p.run_id, identity, body, feed=f"/events/runs/{p.run_id}")

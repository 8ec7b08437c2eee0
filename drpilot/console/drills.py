"""The console's drills page: each runbook's drill schedule (paused? next, last), its past
drills from their evidence packs (as `drpilot drill history` reads them), the RTO trend, the
packs to download and the period's drill report (drpilot/report/drills.py)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from temporalio.client import Client

from drpilot.console.board import one_line
from drpilot.domain.runbook import Runbook
from drpilot.frontdoor.drills import HistoryError, Past, read_history, trend
from drpilot.frontdoor.runs import RunError
from drpilot.frontdoor.schedules import Listed, list_drill_schedules, schedule_id
from drpilot.report import drills as drill_report

HISTORY = 20  # drills shown per runbook


@dataclass(eq=False)
class DrillsView:
    connect: Callable[[], Awaitable[Client]]
    runbooks: dict[str, Runbook]
    stores: Callable[[], Any]  # S3 and Cloud Storage as the console's environment reaches them

    async def page(self, visible: list[str]) -> str:
        try:
            schedules: dict[str, Listed] | str = {s.schedule_id: s for s in await list_drill_schedules(await self.connect())}
        except (RunError, RuntimeError) as exc:
            schedules = one_line(exc)
        sections = []
        for name in visible:
            rb = self.runbooks[name]
            try:
                past = await asyncio.to_thread(read_history, rb, self.stores(), HISTORY)
            except HistoryError as exc:
                past = one_line(exc)
            sections.append(_section(rb, schedules, past))
        return "<h1>Drills</h1>" + ("".join(sections) or "<p>No runbook you may view.</p>")

    async def evidence(self, rb: Runbook, key: str) -> Response:
        """One evidence pack of the runbook, as a download; only keys under its own prefix."""
        past = await asyncio.to_thread(read_history, rb, self.stores(), 10_000)
        found = next((p for p in past if p.key == key), None)
        if found is None:
            return PlainTextResponse(f"no evidence pack {key} of {rb.name}\n", status_code=404)
        body = json.dumps(found.result.model_dump(mode="json"), indent=2)
        return Response(body, media_type="application/json",
                        headers={"Content-Disposition": f'attachment; filename="{key.rsplit("/", 1)[-1]}"'})

    async def report(self, rb: Runbook, request: Request) -> Response:
        since_text, format = request.query_params.get("since", ""), request.query_params.get("format", "html")
        try:
            since = datetime.strptime(since_text, "%Y-%m-%d").replace(tzinfo=UTC)
        except ValueError:
            return PlainTextResponse(f"since={since_text}: expected a date like 2026-01-01\n", status_code=400)
        if format not in drill_report.FORMATS:
            return PlainTextResponse(f"format={format}: expected md or html\n", status_code=400)
        try:
            past = await asyncio.to_thread(read_history, rb, self.stores(), 10_000)
        except HistoryError as exc:
            return PlainTextResponse(f"{exc}\n", status_code=503)
        text = drill_report.FORMATS[format](rb.name, since, [p.result for p in past if p.result.started_at >= since])
        if format == "html":
            return HTMLResponse(text)
        return Response(text, media_type="text/markdown",
                        headers={"Content-Disposition": f'attachment; filename="drills-{rb.name}-since-{since_text}.md"'})


def _section(rb: Runbook, schedules: dict[str, Listed] | str, past: list[Past] | str) -> str:
    name = escape(rb.name)
    if isinstance(schedules, str):
        plan = f'<span class="notready">schedules unreadable</span> <span class="note">{escape(schedules)}</span>'
    elif (s := schedules.get(schedule_id(rb.name))) is None:
        plan = '<span class="note">no drill schedule (drpilot drill schedule)</span>'
    else:
        when = ", ".join(f"{t:%Y-%m-%d %H:%M}Z" for t in s.next_runs) or "none"
        last = f"{s.last_run:%Y-%m-%d %H:%M}Z" if s.last_run else "never"
        plan = (f"{escape(', '.join(s.cron))}{' <b>PAUSED</b>' if s.paused else ''} next {escape(when)}, last {escape(last)}"
                + (f' <span class="note">{escape(s.note)}</span>' if s.note else ""))
    if isinstance(past, str):
        history = f'<p class="notready">evidence unreadable: {escape(past)}</p>'
    elif not past:
        history = '<p class="note">no drill recorded yet</p>'
    else:
        rows = "".join(_drill_row(rb, p) for p in reversed(past))
        history = (f'<p>{escape(trend(past))}</p><table><tr><th>started (UTC)</th><th>mode</th><th>status</th><th>RTO at speed 1</th>'
                   f"<th>evidence</th></tr>{rows}</table>")
    return (f"<h2>{name}</h2><p>schedule: {plan}</p>{history}"
            f'<form method="get" action="/drills/{name}/report">drill report since <input name="since" placeholder="2026-01-01">'
            '<select name="format"><option value="html">html</option><option value="md">md</option></select>'
            "<button>Report</button></form>")


def _drill_row(rb: Runbook, p: Past) -> str:
    r = p.result
    rto = "-" if r.rto_seconds_unscaled is None else f"{r.rto_seconds_unscaled:.0f}s of {r.objective_rto_seconds:.0f}s"
    if r.rto_met is False:
        rto += " MISSED"
    link = f'<a href="/drills/{escape(rb.name)}/evidence/{escape(p.key)}">{escape(p.key.rsplit("/", 1)[-1])}</a>'
    return (f"<tr><td>{r.started_at:%Y-%m-%d %H:%M}</td><td>{escape(r.mode)}</td><td>{escape(r.status)}</td>"
            f"<td>{escape(rto)}</td><td>{link}</td></tr>")

"""The report as Markdown, for pasting into an incident document: the same sections as the
HTML, the timeline as a table with a text bar per phase and step."""

from __future__ import annotations

from drpilot.report.sections import Report, seconds_text, weights_text

BAR_WIDTH = 30


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _facts(rows: list[tuple[str, str]]) -> list[str]:
    return ["| | |", "| --- | --- |", *(f"| **{_cell(k)}** | {_cell(v)} |" for k, v in rows), ""]


def _bar(start: float, seconds: float | None, span: float) -> str:
    """A text Gantt bar: where in the run the row started and how long it took."""
    first = int(BAR_WIDTH * start / span)
    length = max(1, round(BAR_WIDTH * (seconds if seconds is not None else span - start) / span))
    first = min(first, BAR_WIDTH - 1)
    length = min(length, BAR_WIDTH - first)
    return "`" + "·" * first + "█" * length + "·" * (BAR_WIDTH - first - length) + "`"


def render(report: Report) -> str:
    lines = [f"# {report.title}: {report.status}", "", *_facts(report.headline)]
    lines += ["## RTO", "", *_facts(report.rto), "## Trigger and approval", "", *_facts(report.trigger)]
    lines += ["## Timeline", "", "| phase / step | at | took | outcome | | detail |", "| --- | --- | --- | --- | --- | --- |"]
    for bar in report.bars:
        label = f"**{bar.label}**" if bar.depth == 0 else "&nbsp;&nbsp;" * bar.depth + bar.label
        lines.append(f"| {_cell(label)} | {seconds_text(bar.start)} | {seconds_text(bar.seconds)} | {bar.outcome} | "
                     f"{_bar(bar.start, bar.seconds, report.span)} | {_cell(bar.detail)} |")
    lines += ["", "## Traffic weights", ""]
    lines += ["| at | DNS weights |", "| --- | --- |"]
    lines += [f"| {seconds_text(at)} | {weights_text(w)} |" for at, w in report.weights]
    lines.append("")
    if report.shift:
        lines += ["| step | judged at | weights | analysis | outcome |", "| --- | --- | --- | --- | --- |"]
        for step in report.shift:
            numbers = "; ".join(
                f"{a.region}: {a.requests} requests, error rate {a.error_rate:.2%}, p99 {a.p99_ms:.0f}ms, "
                f"{'healthy' if a.healthy else 'DEGRADED'}" for a in step.analyses
            ) or "not analysed"
            lines.append(f"| {step.name} | {seconds_text(step.at)} | {weights_text(step.weights)} | {_cell(numbers)} | {step.outcome} |")
        lines.append("")
    lines += ["## Gates and analyses", ""]
    if report.gates:
        lines += ["| phase | check | region | verdict | evidence |", "| --- | --- | --- | --- | --- |"]
        for gate in report.gates:
            evidence = "; ".join(f"{e.check}: {'pass' if e.passed else 'FAIL'} {e.observed}" for e in gate.evidence)
            verdict = ("pass" if gate.passed else "**FAIL**") + f" {gate.summary}"
            lines.append(f"| {gate.phase} | {gate.kind} | {gate.region} | {_cell(verdict)} | {_cell(evidence)} |")
    else:
        lines.append("No gate ran.")
    lines += ["", "## Changes made", ""]
    if report.changes:
        lines += ["| what | where | before | after | at (UTC) |", "| --- | --- | --- | --- | --- |"]
        lines += [f"| {ch.what} | {_cell(ch.where)} | {_cell(ch.before)} | {_cell(ch.after)} | "
                  f"{ch.at.strftime('%H:%M:%S') if ch.at else ''} |" for ch in report.changes]
    else:
        lines.append("Nothing was changed.")
    lines += ["", "## Messages", "", *(f"- {_cell(m)}" for m in report.messages), ""]
    return "\n".join(lines)

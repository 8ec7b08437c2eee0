"""The report's two pictures as inline SVG: the Gantt timeline of phases and steps, and the
DNS weights over time with each shift step's verdict. Plain SVG 1.1, no script, no font or
stylesheet fetched: the report is read on machines that are offline."""

from __future__ import annotations

from xml.sax.saxutils import escape

from drpilot.report.sections import Bar, Report, ShiftStep, seconds_text

COLOURS = {"ok": "#2e7d32", "failed": "#c62828", "rolled_back": "#ef6c00", "aborted": "#6a1b9a",
           "skipped": "#9e9e9e", "running": "#1565c0", "cancelled": "#9e9e9e", "timed out": "#c62828"}
REGION_COLOURS = ["#1565c0", "#ef6c00", "#2e7d32", "#6a1b9a", "#00838f", "#ad1457"]
FONT = 'font-family="DejaVu Sans, Arial, sans-serif"'


def _ticks(span: float, count: int = 8) -> list[float]:
    """Round tick positions (1, 2, 5 x 10^n seconds) covering 0..span."""
    raw = span / count
    unit = 10 ** len(str(int(raw))) / 10 if raw >= 1 else 0.1
    for step in (unit, 2 * unit, 5 * unit, 10 * unit):
        if span / step <= count:
            break
    ticks, t = [], 0.0
    while t <= span + 1e-9:
        ticks.append(round(t, 3))
        t += step
    return ticks


def timeline(report: Report, width: int = 1000) -> str:
    label_width, right = 330, 20
    row, top = 18, 28
    plot = width - label_width - right
    span = report.span
    height = top + row * len(report.bars) + 10

    def x(seconds: float) -> float:
        return label_width + plot * min(max(seconds / span, 0.0), 1.0)

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="timeline" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" role="img" aria-label="Timeline of phases and steps">',
             f'<rect width="{width}" height="{height}" fill="#fff"/>']
    for tick in _ticks(span):
        parts.append(f'<line x1="{x(tick):.1f}" y1="{top - 6}" x2="{x(tick):.1f}" y2="{height - 6}" stroke="#e0e0e0"/>')
        parts.append(f'<text x="{x(tick):.1f}" y="{top - 10}" font-size="10" text-anchor="middle" {FONT}>{seconds_text(tick)}</text>')
    for i, bar in enumerate(report.bars):
        y = top + i * row
        if bar.depth == 0:
            parts.append(f'<rect x="0" y="{y}" width="{width}" height="{row}" fill="#f5f5f5"/>')
        parts.append(_bar(bar, y, row, x, span))
    parts.append("</svg>")
    return "\n".join(parts)


def _bar(bar: Bar, y: float, row: int, x, span: float) -> str:
    colour = COLOURS.get(bar.outcome, "#616161")
    seconds = bar.seconds if bar.seconds is not None else span - bar.start
    left, right = x(bar.start), x(bar.start + seconds)
    thick = row - 4 if bar.depth == 0 else row - 8
    weight = "bold" if bar.depth == 0 else "normal"
    indent = 6 + 14 * bar.depth
    duration = seconds_text(bar.seconds) if bar.seconds is not None else "running"
    label = bar.label if len(bar.label) <= 38 else bar.label[:37] + "…"
    title = escape(f"{bar.label}: {bar.outcome}, {duration}" + (f"; {bar.detail}" if bar.detail else ""))
    opacity = "1" if bar.depth == 0 else "0.75"
    return (
        f'<g><title>{title}</title>'
        f'<text x="{indent}" y="{y + row - 5}" font-size="11" font-weight="{weight}" {FONT}>{escape(label)}</text>'
        f'<rect x="{left:.1f}" y="{y + (row - thick) / 2:.1f}" width="{max(right - left, 1.5):.1f}" height="{thick}" '
        f'fill="{colour}" fill-opacity="{opacity}" rx="2"/>'
        f'<text x="{min(right + 4, x(span) - 40):.1f}" y="{y + row - 5}" font-size="10" fill="#424242" {FONT}>{duration}</text></g>'
    )


def weights_chart(report: Report, width: int = 1000, height: int = 300) -> str:
    left, right, top, bottom = 50, 20, 30, 60
    plot_w, plot_h = width - left - right, height - top - bottom
    span = report.span
    regions = sorted({r for _, w in report.weights for r in w})

    def x(seconds: float) -> float:
        return left + plot_w * min(max(seconds / span, 0.0), 1.0)

    def y(weight: float) -> float:
        return top + plot_h * (1 - weight / 100)

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="weights" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" role="img" aria-label="DNS weights over time">',
             f'<rect width="{width}" height="{height}" fill="#fff"/>']
    for w in (0, 25, 50, 75, 100):
        parts.append(f'<line x1="{left}" y1="{y(w):.1f}" x2="{width - right}" y2="{y(w):.1f}" stroke="#e0e0e0"/>')
        parts.append(f'<text x="{left - 6}" y="{y(w) + 4:.1f}" font-size="10" text-anchor="end" {FONT}>{w}%</text>')
    for tick in _ticks(span):
        parts.append(f'<text x="{x(tick):.1f}" y="{top + plot_h + 14}" font-size="10" text-anchor="middle" {FONT}>{seconds_text(tick)}</text>')
    for step in report.shift:
        parts.append(_verdict_marker(step, x, top, plot_h))
    for i, region in enumerate(regions):
        colour = REGION_COLOURS[i % len(REGION_COLOURS)]
        points: list[tuple[float, float]] = []
        for at, weights in report.weights:
            value = weights.get(region, 0)
            if points:
                points.append((x(at), points[-1][1]))
            points.append((x(at), y(value)))
        if points:
            points.append((x(span), points[-1][1]))
        path = " ".join(f"{px:.1f},{py:.1f}" for px, py in points)
        parts.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2.5"><title>{escape(region)}</title></polyline>')
        parts.append(f'<rect x="{left + 160 * i}" y="{height - 22}" width="14" height="4" fill="{colour}"/>'
                     f'<text x="{left + 160 * i + 20}" y="{height - 17}" font-size="11" {FONT}>{escape(region)}</text>')
    if not report.weights:
        parts.append(f'<text x="{left + 10}" y="{top + 20}" font-size="12" {FONT}>no DNS change recorded</text>')
    parts.append("</svg>")
    return "\n".join(parts)


def _verdict_marker(step: ShiftStep, x, top: float, plot_h: float) -> str:
    healthy = all(a.healthy for a in step.analyses) if step.analyses else step.outcome == "ok"
    colour = COLOURS["ok"] if healthy else COLOURS["failed"]
    numbers = "; ".join(f"{a.region}: {a.requests} req, {a.error_rate:.2%} err, p99 {a.p99_ms:.0f}ms" for a in step.analyses)
    label = step.name.removeprefix("shift ")
    mark = "✓" if healthy else "✗"
    return (
        f'<g><title>{escape(step.name)}: {"healthy" if healthy else "DEGRADED"}; {escape(numbers)}</title>'
        f'<line x1="{x(step.at):.1f}" y1="{top}" x2="{x(step.at):.1f}" y2="{top + plot_h}" stroke="{colour}" stroke-dasharray="4 3"/>'
        f'<text x="{x(step.at):.1f}" y="{top - 8}" font-size="11" text-anchor="middle" fill="{colour}" {FONT}>{escape(label)} {mark}</text></g>'
    )

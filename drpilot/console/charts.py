"""The home page's small chart: a runbook's RTO over its recent drills, drawn on the server as
inline SVG (no chart library, nothing fetched: the console works on an air-gapped network).

One dot per drill that measured an RTO (at speed 1, as the evidence pack records it), against
the dashed objective; a missed objective is red. Each dot's title says when, what and how
long, escaped like everything else on the page.
"""

from __future__ import annotations

from html import escape
from typing import Any

WIDTH, HEIGHT, PAD = 140, 36, 4
MET, MISSED, LINE, OBJECTIVE = "#2e7d32", "#c62828", "#90a4ae", "#9e9e9e"


def rto_trend(trend: dict[str, Any] | None) -> str:
    """The chart of `Board._trend`'s facts; a short note where there is nothing to draw."""
    if trend is None:
        return ""
    if "error" in trend:
        return f'<br><span class="note">RTO trend unreadable: {escape(trend["error"])}</span>'
    measured = [d for d in trend["drills"] if d["rto"] is not None]
    if not measured:
        return '<br><span class="note">no drill measured an RTO yet</span>'
    objective = measured[-1]["objective"]
    top = max(objective, *(d["rto"] for d in measured)) * 1.1
    step = (WIDTH - 2 * PAD) / max(len(measured) - 1, 1)

    def y(seconds: float) -> float:
        return HEIGHT - PAD - (HEIGHT - 2 * PAD) * seconds / top

    points = [(PAD + i * step, y(d["rto"])) for i, d in enumerate(measured)]
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="rto-trend" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="RTO of the last {len(measured)} drills against the objective">',
        f'<line x1="0" y1="{y(objective):.1f}" x2="{WIDTH}" y2="{y(objective):.1f}" stroke="{OBJECTIVE}" stroke-dasharray="3,2">'
        f"<title>objective {objective:.0f}s</title></line>",
    ]
    if len(points) > 1:
        parts.append(f'<polyline points="{" ".join(f"{px:.1f},{py:.1f}" for px, py in points)}" fill="none" stroke="{LINE}"/>')
    for (px, py), d in zip(points, measured, strict=True):
        title = escape(f"{d['started_at'][:16].replace('T', ' ')}Z {d['status']}: RTO {d['rto']:.0f}s of {d['objective']:.0f}s")
        colour = MISSED if d["met"] is False else MET
        parts.append(f'<circle cx="{px:.1f}" cy="{py:.1f}" r="3" fill="{colour}"><title>{title}</title></circle>')
    last = measured[-1]
    parts.append("</svg>")
    return (f"<br>{''.join(parts)}"
            f' <span class="note">RTO {last["rto"]:.0f}s / {last["objective"]:.0f}s</span>')

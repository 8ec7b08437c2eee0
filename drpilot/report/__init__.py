"""Run reports: what a failover or failback did, as one HTML file (inline SVG timeline and
weights chart, no script) or Markdown for an incident document, read from the run's
Temporal history (`drpilot report RUN_ID`, `--report DIR` on a run).

    facts.py     the run read back from its history (request, result, steps, operators)
    sections.py  what each section says, format-free
    charts.py    the two SVG pictures
    html.py, markdown.py
"""

from __future__ import annotations

from temporalio.client import WorkflowHistory

from drpilot.report import html, markdown
from drpilot.report.facts import NotARun, RunFacts, read
from drpilot.report.sections import build

FORMATS = {"html": html.render, "md": markdown.render}

__all__ = ["FORMATS", "STYLE", "NotARun", "RunFacts", "build", "file_name", "read", "render", "sections_html"]

sections_html = html.sections  # the report's body, which the console's run page shows as it is
STYLE = html.STYLE


def render(history: WorkflowHistory, format: str) -> str:
    return FORMATS[format](build(read(history)))


def file_name(facts_or_history: RunFacts | WorkflowHistory, format: str) -> str:
    """failback-llm-inference-1a2b3c4d.html: the action, runbook and Temporal run, so two
    runs of the same id (a rolled-back failback, then the one that completed) never collide."""
    facts = facts_or_history if isinstance(facts_or_history, RunFacts) else read(facts_or_history)
    return f"{facts.action}-{facts.request.runbook.name}-{facts.temporal_run_id[:8]}.{format}"

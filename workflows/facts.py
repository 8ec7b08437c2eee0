"""What every part of a run knows about it from the start and never changes: which runbook,
which action, what started it, at which speed. The run's parts (approval, notifications,
gates, workloads, traffic, verdict) each hold it, so the run is told once (workflows/control.py)."""

from __future__ import annotations

from dataclasses import dataclass

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.contracts import Trigger
    from drpilot.domain.runbook import Runbook
    from workflows.types import Action


@dataclass(frozen=True, kw_only=True)
class RunFacts:
    runbook: Runbook
    action: Action
    trigger: Trigger
    speed: float  # every wait is divided by it (1 in production)
    requested_by: str
    rehearsal: bool  # a rehearsal drill against the sandbox: nobody to approve
    override_safety_rules: tuple[str, ...] = ()  # Route 53 ARC safety rules its DNS changes may override

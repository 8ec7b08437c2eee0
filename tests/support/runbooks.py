"""The example runbooks of runbooks/, changed where a test needs another situation."""

from __future__ import annotations

from typing import Any

from drpilot.domain.loader import load_runbook
from drpilot.domain.runbook import Runbook
from tests.support.paths import RUNBOOKS


def runbook(name: str, **changes: Any) -> Runbook:
    """A runbook from runbooks/, with `changes` applied at dotted paths (spec.approvals.failover=...)."""
    data = load_runbook(RUNBOOKS / name).model_dump(mode="json")
    for path, value in changes.items():
        *parents, leaf = path.split("__")
        node = data
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return Runbook.model_validate(data)

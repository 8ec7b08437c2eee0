"""The example runbooks of runbooks/, changed where a test needs another situation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from drpilot.domain.loader import load_runbook
from drpilot.domain.runbook import Runbook
from tests.support.paths import ROUTE53_RUNBOOK, RUNBOOKS


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


def renamed(directory: Path, name: str) -> Runbook:
    """runbooks/llm-inference.yaml as DIRECTORY/NAME.yaml under another name, moving its own DNS
    record (NAME.example.com.): one of a fleet sharing one twin's zone and clusters."""
    text = ROUTE53_RUNBOOK.read_text().replace("  name: llm-inference\n", f"  name: {name}\n", 1)
    text = text.replace("- name: inference.example.com.", f"- name: {name}.example.com.")
    path = directory / f"{name}.yaml"
    path.write_text(text)
    return load_runbook(path)

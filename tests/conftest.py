"""Shared test configuration. Area fixtures live in tests/<area>/conftest.py."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
RUNBOOKS = ROOT / "runbooks"


@pytest.fixture(scope="session")
def runbook_paths() -> list[Path]:
    return sorted(RUNBOOKS.glob("*.yaml"))

"""Shared test configuration. Area fixtures live in tests/<area>/conftest.py."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
RUNBOOKS = ROOT / "runbooks"


@pytest.fixture(scope="session")
def runbook_paths() -> list[Path]:
    return sorted(RUNBOOKS.glob("*.yaml"))


# The test process holds Temporal clients and test servers; interpreter finalization can
# then abort (temporalio/sdk-python#300), turning a green run into exit -6 after the
# summary is printed. End the way the drpilot CLI does (drpilot/cli/process_exit.py), with
# pytest's own exit status, after every other plugin has finished.
_EXIT_STATUS = pytest.StashKey[int]()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    session.config.stash[_EXIT_STATUS] = int(exitstatus)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    if _EXIT_STATUS in config.stash:
        from drpilot.cli.process_exit import end_process

        end_process(config.stash[_EXIT_STATUS])

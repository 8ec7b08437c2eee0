"""Saved histories of every workflow replay without non-determinism errors (STYLE.md 15).

The histories in histories/ were produced by the tests in this directory; regenerate them
with `DRPILOT_SAVE_HISTORIES=1 pytest tests/workflows` after a deliberate, patched change.
A workflow change that alters the commands of an existing run fails here: guard it with
workflow.patched() instead.
"""

from __future__ import annotations

import pytest
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from tests.workflows.conftest import HISTORIES, WORKFLOWS

SAVED = sorted(HISTORIES.glob("*.json"))
EXPECTED = {
    "failover_graceful", "failover_ungraceful", "failover_n_region", "failover_aborted_in_switch",
    "failover_ungraceful_rechecked", "failback_completed", "failback_rolled_back", "failback_aborted_in_shift",
}


def test_every_kind_of_run_has_a_saved_history():
    assert {p.stem for p in SAVED} >= EXPECTED


@pytest.mark.parametrize("path", SAVED, ids=[p.stem for p in SAVED])
async def test_saved_history_replays(path):
    history = WorkflowHistory.from_json(path.stem, path.read_text())
    replayer = Replayer(workflows=WORKFLOWS, data_converter=pydantic_data_converter)
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None, f"{path.name}: {result.replay_failure}"

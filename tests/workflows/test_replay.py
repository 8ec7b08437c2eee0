"""Saved histories of every workflow replay without non-determinism errors.

histories/<release>/ holds the histories the tests in this directory produced with that
release's code; every release's set is kept, so a run started on any of them and replayed
by today's worker (after an upgrade mid-run) is proven to replay. A workflow change that
alters the commands of an existing run fails here: guard it (workflows/versions.py).
`DRPILOT_SAVE_HISTORIES=1 pytest tests/workflows` writes the current release's set.
"""

from __future__ import annotations

import pytest
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from drpilot import __version__
from tests.support.temporal import HISTORIES, WORKFLOWS
from workflows.drill import DrillWorkflow
from workflows.readiness import ReadinessWorkflow

SAVED = sorted(HISTORIES.glob("*/*.json"))
EXPECTED = {
    "failover_graceful", "failover_ungraceful", "failover_n_region", "failover_aborted_in_switch",
    "failover_ungraceful_rechecked", "failback_completed", "failback_rolled_back", "failback_aborted_in_shift",
}
# Kinds of run first recorded in a later release.
SINCE = {
    "0.2.0": {
        "failback_held_on_drift", "failback_no_healthy_destination",
        "drill_completed", "drill_aborted_in_soak", "drill_failover_failed",
        "readiness_not_ready", "readiness_turned_not_ready",
    },
    "0.3.0": {"failback_rehearsed"},  # a rehearsal's short waits slept by the worker
}


@pytest.mark.parametrize("release", sorted({p.parent.name for p in SAVED}))
def test_every_kind_of_run_has_a_saved_history(release):
    expected = EXPECTED | {k for r, kinds in SINCE.items() if r <= release for k in kinds}
    assert {p.stem for p in SAVED if p.parent.name == release} >= expected


def test_this_release_has_its_histories():
    assert (HISTORIES / __version__).is_dir(), "record them: DRPILOT_SAVE_HISTORIES=1 pytest tests/workflows"


@pytest.mark.parametrize("path", SAVED, ids=[f"{p.parent.name}/{p.stem}" for p in SAVED])
async def test_saved_history_replays(path):
    history = WorkflowHistory.from_json(path.stem, path.read_text())
    # A drill names its children after itself (ID/failover): replay it under its own id.
    children = [
        e.start_child_workflow_execution_initiated_event_attributes.workflow_id
        for e in history.events if e.HasField("start_child_workflow_execution_initiated_event_attributes")
    ]
    if children:
        history = WorkflowHistory(children[0].rpartition("/")[0], history.events)
    replayer = Replayer(workflows=[*WORKFLOWS, DrillWorkflow, ReadinessWorkflow], data_converter=pydantic_data_converter)
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None, f"{path.name}: {result.replay_failure}"

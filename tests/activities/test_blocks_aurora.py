"""blocks.aurora_read / blocks.aurora_switch against the twin's AWS front: moto's global
cluster, the switchover and failover the front adds, the lag CloudWatch shows."""

from __future__ import annotations

import boto3
import pytest
from drpilot_twin.aws.moto_server import AWS_ENV
from temporalio.exceptions import ApplicationError

from activities.blocks.aurora import AuroraActivities
from activities.contracts import AuroraReadInput, AuroraSwitchInput, ErrorType
from tests.support.activities import run, run_until_killed

HOME, DR = "us-east-1", "us-west-2"
MEMBERS = {
    HOME: "arn:aws:rds:us-east-1:123456789012:cluster:mlflow-use1",
    DR: "arn:aws:rds:us-west-2:123456789012:cluster:mlflow-usw2",
}


def _client(url: str):
    def client_for(service: str, region: str):
        return boto3.client(service, endpoint_url=url, region_name=region, aws_access_key_id=AWS_ENV["AWS_ACCESS_KEY_ID"],
                            aws_secret_access_key=AWS_ENV["AWS_SECRET_ACCESS_KEY"])
    return client_for


@pytest.fixture
def aurora(front, board):
    """The global cluster mlflow-global written in us-east-1, nothing in flight, no fault."""
    board.clear()
    client_for = _client(front.url)
    front.aurora.seed(lambda region: client_for("rds", region), "mlflow-global", MEMBERS, HOME)
    front.aurora.forget()
    return AuroraActivities(client_for, poll_seconds=2.0)


def switch(aurora, **fields):
    return AuroraSwitchInput(block="registry-db", global_cluster="mlflow-global", members=MEMBERS,
                             source=HOME, target=DR, max_lag_seconds=30, speed=100, **fields)


def writer(aurora) -> str:
    state = run(aurora.aurora_read, AuroraReadInput(block="registry-db", global_cluster="mlflow-global", members=MEMBERS))
    return state.writer_region


def test_the_preflight_reads_the_writer_and_the_lag_and_names_a_missing_member(aurora, board):
    board.update(aurora_lag_seconds=4)
    state = run(aurora.aurora_read, AuroraReadInput(block="registry-db", global_cluster="mlflow-global", members=MEMBERS, target=DR))
    assert (state.exists, state.writer_region, state.lag_seconds, state.problems) == (True, HOME, 4.0, [])
    other = {**MEMBERS, "eu-west-1": "arn:aws:rds:eu-west-1:123456789012:cluster:mlflow-euw1"}
    state = run(aurora.aurora_read, AuroraReadInput(block="registry-db", global_cluster="mlflow-global", members=other))
    assert any("eu-west-1's member" in p and "not in global cluster mlflow-global" in p for p in state.problems)


def test_a_graceful_switchover_is_refused_above_max_lag_before_any_change(aurora, board, front):
    board.update(aurora_lag_seconds=45)
    with pytest.raises(ApplicationError) as refused:
        run(aurora.aurora_switch, switch(aurora))
    assert refused.value.type == ErrorType.AURORA_LAG_TOO_HIGH and refused.value.non_retryable
    assert "45 s behind, above max_lag 30 s" in str(refused.value)
    assert front.aurora.requests == 0 and writer(aurora) == HOME


def test_a_graceful_switchover_makes_the_target_the_writer_with_its_lag_recorded(aurora, board, front):
    board.update(aurora_lag_seconds=2.5)
    result = run(aurora.aurora_switch, switch(aurora))
    assert (result.mode, result.data_loss_allowed, result.writer_before, result.writer_after) == ("switchover", False, HOME, DR)
    assert result.lag_seconds == 2.5 and result.waits and result.waits[0].kind == "aurora"
    assert writer(aurora) == DR and [op.kind for op in front.aurora.accepted] == ["switchover"]
    # Run again (the workflow's retry after the result was lost): nothing more is asked.
    again = run(aurora.aurora_switch, switch(aurora))
    assert again.mode == "already" and front.aurora.requests == 1


def test_a_worker_killed_after_asking_makes_one_switchover(aurora, front):
    # Killed right after the request; the retry resumes from the heartbeat sent BEFORE it (the
    # one after it may never have reached Temporal): only the global cluster's state can tell.
    asking = run_until_killed(aurora.aurora_switch, switch(aurora), lambda beat: beat.get("phase") == "requested")
    assert front.aurora.requests == 1
    result = run(aurora.aurora_switch, switch(aurora), resume={**asking, "phase": "requesting"})
    assert result.mode == "switchover" and result.writer_after == DR and writer(aurora) == DR
    assert front.aurora.requests == 1


@pytest.mark.parametrize("mode", ["ungraceful", "graceful"])
def test_with_the_source_region_dark_it_fails_over_with_data_loss_allowed(aurora, board, front, mode):
    board.update(region_down=[HOME], aurora_lag_seconds=45)  # a graceful run finds the source dark
    result = run(aurora.aurora_switch, switch(aurora, mode=mode))
    assert (result.mode, result.data_loss_allowed, result.lag_seconds) == ("failover", True, 45.0)
    assert [(op.kind, op.data_loss) for op in front.aurora.accepted] == [("failover", True)]
    assert writer(aurora) == DR
    if mode == "graceful":
        assert f"{HOME}'s RDS endpoint does not answer" in result.reason


def test_a_switchover_aurora_cancels_fails_the_block_with_the_writer_unchanged(aurora, board):
    board.update(aurora_switchover_fails=True)
    with pytest.raises(ApplicationError) as cancelled:
        run(aurora.aurora_switch, switch(aurora))
    assert cancelled.value.type == ErrorType.AURORA_SWITCH_CANCELLED and "the writer is still us-east-1" in str(cancelled.value)
    assert writer(aurora) == HOME

"""The twin's Aurora global database (twin/drpilot_twin/aws/aurora.py) as AWS documents it,
through boto3: what a switchover and a failover look like while they run, and when AWS refuses them."""

from __future__ import annotations

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from drpilot_twin.aws.front import AwsFront
from drpilot_twin.aws.moto_server import AWS_ENV
from drpilot_twin.faults import FaultBoard

from tests.support.loopback import serving

HOME = "arn:aws:rds:us-east-1:123456789012:cluster:registry-use1"
DR = "arn:aws:rds:us-west-2:123456789012:cluster:registry-usw2"


@pytest.fixture(scope="module")
def world():
    board = FaultBoard()
    with serving(AwsFront(board, speed=1.0)) as front:  # speed 1: a switchover stays in flight for the test

        def rds(region: str):
            return boto3.client("rds", endpoint_url=front.url, region_name=region, aws_access_key_id=AWS_ENV["AWS_ACCESS_KEY_ID"],
                                aws_secret_access_key=AWS_ENV["AWS_SECRET_ACCESS_KEY"], config=Config(retries={"max_attempts": 1}))

        front.aurora.seed(rds, "registry-global", {"us-east-1": HOME, "us-west-2": DR}, "us-east-1")
        yield board, front, rds


def refusal(call, **params) -> str:
    with pytest.raises(ClientError) as refused:
        call(GlobalClusterIdentifier="registry-global", **params)
    return refused.value.response["Error"]["Code"]


def test_a_switchover_is_in_flight_until_done_and_refused_while_a_member_is_dark(world):
    board, front, rds = world
    west = rds("us-west-2")
    board.update(region_down=["us-east-1"])
    # AWS: a switchover synchronises every member first; with the writer's region down only a failover works.
    assert refusal(west.switchover_global_cluster, TargetDbClusterIdentifier=DR) == "InvalidDBClusterStateFault"
    with pytest.raises(ClientError) as dark:
        rds("us-east-1").describe_global_clusters()
    assert dark.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
    board.clear()
    started = west.switchover_global_cluster(GlobalClusterIdentifier="registry-global", TargetDbClusterIdentifier=DR)
    cluster = started["GlobalCluster"]
    assert cluster["Status"] == "switching-over"
    assert cluster["FailoverState"] == {"Status": "switching-over", "FromDbClusterArn": HOME, "ToDbClusterArn": DR,
                                        "IsDataLossAllowed": False}
    # One operation at a time, and none with data loss alongside a switchover.
    assert refusal(west.failover_global_cluster, TargetDbClusterIdentifier=DR, AllowDataLoss=True) == "InvalidGlobalClusterStateFault"
    assert refusal(west.failover_global_cluster, TargetDbClusterIdentifier=DR, AllowDataLoss=True,
                   Switchover=True) == "InvalidParameterCombination"
    [described] = west.describe_global_clusters(GlobalClusterIdentifier="registry-global")["GlobalClusters"]
    writers = {m["DBClusterArn"]: m["IsWriter"] for m in described["GlobalClusterMembers"]}
    assert writers == {HOME: True, DR: False}  # still the old writer while it runs
    with pytest.raises(ClientError) as unknown:  # moto lists every global cluster whatever the filter
        west.describe_global_clusters(GlobalClusterIdentifier="no-such-global")
    assert unknown.value.response["Error"]["Code"] == "GlobalClusterNotFoundFault"
    assert front.aurora.describe("registry-global", {"us-east-1": HOME, "us-west-2": DR}) == {
        "writer": "us-east-1", "status": "switching-over", "operation": f"switching-over to {DR}"}  # sandbox status
    assert [op.kind for op in front.aurora.accepted] == ["switchover"] and front.aurora.requests == 4

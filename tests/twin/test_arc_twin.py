"""The twin's Route 53 ARC cluster and Route53 control plane, through plain boto3: the
data plane's operations and errors as AWS documents them, the faults
`arc_endpoints_down=N` and `route53_control_plane_down`, and what resolvers are answered
when routing controls turn the records' health checks."""

from __future__ import annotations

import boto3
import botocore.exceptions
import pytest
from botocore.config import Config

from drpilot.domain.loader import load_runbook
from tests.support.paths import ARC_RUNBOOK

RUNBOOK = load_runbook(ARC_RUNBOOK)
ARC = RUNBOOK.spec.dns.routing_controls
EAST, WEST = ARC.controls["us-east-1"].arn, ARC.controls["us-west-2"].arn
RULE = ARC.safety_rules["at-least-one-on"]


def cluster(url: str):
    # ARC's clients are signed for the endpoint's region; no retries: a test sees each answer.
    return boto3.client(
        "route53-recovery-cluster", endpoint_url=url, region_name="us-west-2",
        aws_access_key_id="testing", aws_secret_access_key="testing", config=Config(retries={"max_attempts": 1}),
    )


def states(*pairs: tuple[str, str]) -> list[dict[str, str]]:
    return [{"RoutingControlArn": arn, "RoutingControlState": state} for arn, state in pairs]


@pytest.fixture
def twin(twin_factory):
    return twin_factory(ARC_RUNBOOK, traffic=False)


def answered(twin) -> dict[str, int]:
    twin._weights.invalidate()
    return twin.weights()


def test_routing_controls_take_a_region_out_of_dns_answers(twin):
    client = cluster(twin.arc.urls[0])
    assert client.get_routing_control_state(RoutingControlArn=EAST)["RoutingControlState"] == "On"
    assert answered(twin) == {"us-east-1": 100, "us-west-2": 0}
    client.update_routing_control_states(UpdateRoutingControlStateEntries=states((EAST, "Off"), (WEST, "On")))
    # us-east-1's record is unhealthy, so Route53 answers with the healthy zero-weight one.
    assert answered(twin) == {"us-east-1": 0, "us-west-2": 100}
    assert twin.routing_controls() == {"us-east-1": "Off", "us-west-2": "On"}
    # Every endpoint answers the same state: the cluster replicates it.
    assert {cluster(u).get_routing_control_state(RoutingControlArn=EAST)["RoutingControlState"] for u in twin.arc.urls} == {"Off"}


def test_when_every_record_is_unhealthy_route53_answers_all_of_them(twin):
    twin.arc.set_states({EAST: "Off", WEST: "Off"})  # past the safety rule, as a break-glass would
    # As if all were healthy: by weight.
    assert answered(twin) == {"us-east-1": 100, "us-west-2": 0}


def test_the_safety_rule_refuses_by_name_unless_overridden(twin):
    client = cluster(twin.arc.urls[1])
    with pytest.raises(client.exceptions.ConflictException) as refused:
        client.update_routing_control_states(UpdateRoutingControlStateEntries=states((EAST, "Off"), (WEST, "Off")))
    assert refused.value.response["Error"]["Code"] == "ConflictException"
    assert "at-least-one-on" in refused.value.response["Error"]["Message"]
    assert refused.value.response["resourceId"] == RULE
    assert twin.routing_controls() == {"us-east-1": "On", "us-west-2": "On"}  # all or nothing
    client.update_routing_control_states(
        UpdateRoutingControlStateEntries=states((EAST, "Off"), (WEST, "Off")), SafetyRulesToOverride=[RULE]
    )
    assert twin.routing_controls() == {"us-east-1": "Off", "us-west-2": "Off"}


def test_setting_a_state_twice_is_one_effect(twin):
    client = cluster(twin.arc.urls[2])
    for _ in range(2):
        client.update_routing_control_state(RoutingControlArn=EAST, RoutingControlState="Off")
    assert twin.arc.log.updates == 2
    assert twin.arc.log.transitions == [(EAST, "Off")]


def test_arc_endpoints_down_fails_the_first_n_endpoints(twin):
    twin.board.update(arc_endpoints_down=3)
    for url in twin.arc.urls[:3]:
        with pytest.raises(botocore.exceptions.ClientError) as down:
            cluster(url).get_routing_control_state(RoutingControlArn=EAST)
        assert down.value.response["Error"]["Code"] == "EndpointTemporarilyUnavailableException"
        assert down.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
    for url in twin.arc.urls[3:]:
        listed = cluster(url).list_routing_controls(ControlPanelArn=ARC.control_panel)["RoutingControls"]
        assert {c["RoutingControlArn"] for c in listed} == {EAST, WEST}


def test_unknown_controls_and_states_are_refused_as_aws_does(twin):
    client = cluster(twin.arc.urls[0])
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        client.get_routing_control_state(RoutingControlArn=EAST + "0")
    with pytest.raises(client.exceptions.ValidationException):
        client.update_routing_control_state(RoutingControlArn=EAST, RoutingControlState="Maybe")


def test_route53_control_plane_down_refuses_changes_but_not_reads(twin):
    route53 = boto3.client(
        "route53", endpoint_url=twin.aws_url, region_name="us-east-1", aws_access_key_id="testing",
        aws_secret_access_key="testing", config=Config(retries={"max_attempts": 1}),
    )
    # The twin's own zone: moto servers in one process share their state, so other tests'
    # twins may have left zones of the same name.
    zone = twin._dns.zone_id
    twin.board.update(route53_control_plane_down=True)
    listed = route53.list_resource_record_sets(HostedZoneId=zone)["ResourceRecordSets"]
    # This runbook's record only: the zone is shared with other tests' runbooks (moto servers in
    # one process share their state), whose records carry no health check.
    carried = {r["SetIdentifier"]: r.get("HealthCheckId") for r in listed
               if "SetIdentifier" in r and r["Name"] == "inference.example.com."}
    assert carried == {region: control.health_check for region, control in ARC.controls.items()}
    change = {"Changes": [{"Action": "UPSERT", "ResourceRecordSet": {
        "Name": "inference.example.com.", "Type": "CNAME", "SetIdentifier": "us-east-1", "Weight": 0, "TTL": 60,
        "ResourceRecords": [{"Value": "lb-use1.example.com."}]}}]}
    with pytest.raises(botocore.exceptions.ClientError) as down:
        route53.change_resource_record_sets(HostedZoneId=zone, ChangeBatch=change)
    assert down.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
    with pytest.raises(botocore.exceptions.ClientError):
        route53.get_change(Id="C0000000000")
    # The data plane keeps working: a routing control still moves traffic.
    cluster(twin.arc.urls[4]).update_routing_control_states(
        UpdateRoutingControlStateEntries=states((EAST, "Off"), (WEST, "On")))
    assert answered(twin) == {"us-east-1": 0, "us-west-2": 100}
    twin.board.update(route53_control_plane_down=False)
    route53.change_resource_record_sets(HostedZoneId=zone, ChangeBatch=change)


def test_the_fault_arguments_parse_as_the_sandbox_cli_gives_them():
    from drpilot_twin.control import FaultError, faults_from_json, parse_fault_args

    assert parse_fault_args(["route53_control_plane_down=1", "arc_endpoints_down=3"]) == {
        "route53_control_plane_down": True, "arc_endpoints_down": 3}
    with pytest.raises(FaultError, match="an ARC cluster has 5 endpoints"):
        faults_from_json({"arc_endpoints_down": 6})

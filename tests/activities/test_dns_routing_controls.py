"""DNS_READ and DNS_APPLY for a runbook switched by Route 53 ARC routing controls, against
the in-process twin (its ARC cluster of five loopback endpoints, moto behind the AWS front),
with real boto3 `route53-recovery-cluster` and `route53` clients.

A failover needs only ARC's data plane: with Route53's control plane down and three of the
cluster's five endpoints failing, one UpdateRoutingControlStates moves the traffic and no
record changes. Planned work (a failback's shift step) moves the weights through Route53.
"""

from __future__ import annotations

import pytest
from drpilot_twin.aws.arc import AssertionRule
from drpilot_twin.aws.moto_server import AWS_ENV
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.contracts import DnsApplyInput, DnsReadInput, ErrorType
from activities.dns.activities import DnsActivities
from activities.dns.controls import answered
from drpilot.domain.loader import load_runbook
from drpilot.domain.runbook import Runbook
from drpilot.domain.settings import ProviderSettings, Settings
from tests.support.aws import aws_client
from tests.support.paths import ARC_RUNBOOK
from workflows.readiness import routing_control_checks

RUNBOOK = load_runbook(ARC_RUNBOOK)
ARC = RUNBOOK.spec.dns.routing_controls
EAST, WEST = ARC.controls["us-east-1"].arn, ARC.controls["us-west-2"].arn
FAILOVER = {"us-east-1": 0, "us-west-2": 100}
SPEED = 100.0


@pytest.fixture
def twin(twin_factory, monkeypatch):
    for key, value in AWS_ENV.items():  # the ARC clients take the default credentials, as in production
        monkeypatch.setenv(key, value)
    return twin_factory(ARC_RUNBOOK, traffic=False)


def dns(twin) -> DnsActivities:
    settings = Settings(providers=ProviderSettings(arc_endpoint_map=twin.arc_endpoint_map()))
    return DnsActivities(route53=aws_client("route53", twin.aws_url), settings=settings)


def apply(activities: DnsActivities, weights: dict[str, int], runbook: Runbook = RUNBOOK, **options):
    return ActivityEnvironment().run(
        activities.apply, DnsApplyInput(runbook=runbook, weights=weights, speed=SPEED, **options)
    )


def read(activities: DnsActivities, **options) -> dict[str, int]:
    return state(activities, **options).weights()


def state(activities: DnsActivities, **options):
    return ActivityEnvironment().run(activities.read, DnsReadInput(runbook=RUNBOOK, **options))


def test_answers_follow_route53s_rules_for_health_checked_weights():
    assert answered({"a": 100, "b": 0}, {"a": False, "b": True}) == {"a": 0, "b": 100}
    assert answered({"a": 60, "b": 40}, {"a": True, "b": True}) == {"a": 60, "b": 40}
    assert answered({"a": 50, "b": 50}, {"a": False, "b": True}) == {"a": 0, "b": 100}
    assert answered({"a": 100, "b": 0}, {"a": False, "b": False}) == {"a": 100, "b": 0}  # none healthy: as if all were
    assert answered({"a": 0, "b": 0, "c": 0}, {"a": False, "b": True, "c": True}) == {"a": 0, "b": 50, "c": 50}


def test_a_failover_needs_only_the_data_plane(twin):
    twin.board.update(route53_control_plane_down=True, arc_endpoints_down=3)
    activities = dns(twin)
    assert read(activities) == {"us-east-1": 100, "us-west-2": 0}
    result = apply(activities, FAILOVER, known_good=True)
    assert (result.status, result.weights, result.change_id) == ("switched", FAILOVER, None)
    assert twin.routing_controls() == {"us-east-1": "Off", "us-west-2": "On"}
    assert twin.aws.change_count == 0  # no record changed: Route53's control plane was never asked
    assert twin.aws.log.control_plane_refused == 0
    assert read(activities) == FAILOVER


def test_a_repeated_update_has_one_effect(twin):
    """Setting a control's state is idempotent; a retry that finds the states in place (the
    worker died after the update landed) makes no call, and a second update changes nothing."""
    activities = dns(twin)
    first = apply(activities, FAILOVER, known_good=True)
    again = apply(activities, FAILOVER, known_good=True)
    assert (first.status, again.status) == ("switched", "unchanged")
    assert again.weights == FAILOVER
    activities.routing_controls().update(RUNBOOK, {"us-east-1": "Off", "us-west-2": "On"})  # sent twice
    assert twin.arc.log.updates == 2
    assert twin.arc.log.transitions == [(EAST, "Off")]


def test_a_safety_rule_that_refuses_is_named_and_can_be_overridden(twin):
    rule = ARC.control_panel + "/safetyrule/keepuse1on000000"
    data = RUNBOOK.model_dump(mode="json")
    data["spec"]["dns"]["routing_controls"]["safety_rules"]["keep-use1-on"] = rule
    runbook = Runbook.model_validate(data)
    twin.arc.add_rule(AssertionRule(rule, "keep-use1-on", (EAST,), 1))
    activities = dns(twin)
    with pytest.raises(ApplicationError) as refused:
        apply(activities, FAILOVER, runbook, known_good=True)
    assert refused.value.type == ErrorType.DNS_SAFETY_RULE
    assert refused.value.non_retryable
    assert "safety rule keep-use1-on refused" in refused.value.message
    assert "--override-safety-rule keep-use1-on" in refused.value.message
    assert twin.routing_controls() == {"us-east-1": "On", "us-west-2": "On"}
    result = apply(activities, FAILOVER, runbook, known_good=True, override_safety_rules=["keep-use1-on"])
    assert result.status == "switched"
    assert twin.routing_controls() == {"us-east-1": "Off", "us-west-2": "On"}


def test_planned_work_moves_the_weights_and_turns_the_controls_on(twin):
    activities = dns(twin)
    apply(activities, FAILOVER, known_good=True)
    step = {"us-east-1": 10, "us-west-2": 90}
    twin.board.update(route53_control_plane_down=True)
    with pytest.raises(ApplicationError) as down:
        apply(activities, step)
    assert down.value.type == ErrorType.DNS_CONTROL_PLANE_DOWN
    assert twin.routing_controls() == {"us-east-1": "Off", "us-west-2": "On"}  # nothing half-done
    assert read(activities) == FAILOVER
    twin.board.update(route53_control_plane_down=False)
    result = apply(activities, step)
    assert result.weights == step
    assert twin.routing_controls() == {"us-east-1": "On", "us-west-2": "On"}
    assert read(activities) == step


def test_the_read_says_when_route53s_control_plane_does_not_answer(twin):
    activities = dns(twin)
    assert state(activities, control_plane=True).control_plane_down == ""  # NoSuchChange is an answer
    twin.board.update(route53_control_plane_down=True)
    down = state(activities, control_plane=True)
    assert "Route53's control plane does not answer (ServiceUnavailable" in down.control_plane_down
    assert down.weights() == {"us-east-1": 100, "us-west-2": 0}  # reads still answer
    assert state(activities).control_plane_down == ""  # not asked, not checked


def test_when_no_endpoint_answers_the_switch_is_retried(twin):
    twin.board.update(arc_endpoints_down=5)
    with pytest.raises(ApplicationError) as down:
        apply(dns(twin), FAILOVER, known_good=True)
    assert down.value.type == ErrorType.DNS_CONTROLS_UNAVAILABLE
    assert not down.value.non_retryable
    assert down.value.message.count("EndpointTemporarilyUnavailableException") == 5


def ready(twin) -> list:
    found = ActivityEnvironment().run(dns(twin).routing_controls_ready, DnsReadInput(runbook=RUNBOOK))
    return [(check.name, check.ready) for check in routing_control_checks(RUNBOOK, found)]


def test_readiness_of_the_switch_endpoints_controls_and_health_checks(twin):
    assert ready(twin) == [
        ("routing controls: cluster endpoints", True),
        ("us-east-1: routing control", True),
        ("us-west-2: routing control", True),
        ("routing controls: health checks on records", True),
    ]
    twin.board.update(arc_endpoints_down=2)
    assert ready(twin)[0] == ("routing controls: cluster endpoints", True)  # 3 of 5 answer
    twin.board.update(arc_endpoints_down=3)
    twin.arc.set_states({WEST: "Off"})
    route53 = aws_client("route53", twin.aws_url)
    # The twin's own zone: moto servers in one process share their state, so other tests'
    # twins may have left zones of the same name.
    zone = twin._dns.zone_id
    route53.change_resource_record_sets(HostedZoneId=zone, ChangeBatch={"Changes": [{"Action": "UPSERT", "ResourceRecordSet": {
        "Name": "inference.example.com.", "Type": "CNAME", "SetIdentifier": "us-west-2", "Weight": 0, "TTL": 60,
        "ResourceRecords": [{"Value": "lb-usw2.example.com."}]}}]})  # someone dropped its health check
    assert ready(twin) == [
        ("routing controls: cluster endpoints", False),
        ("us-east-1: routing control", True),
        ("us-west-2: routing control", False),
        ("routing controls: health checks on records", False),
    ]


def test_a_control_turned_by_someone_else_is_what_dns_answers_so_a_run_sees_drift(twin):
    """The workflow's drift check compares this read with what the run last applied: a
    control turned outside the run changes the read exactly as a weight change would."""
    activities = dns(twin)
    applied = apply(activities, FAILOVER, known_good=True).weights
    twin.arc.set_states({EAST: "On"})  # someone turned us-east-1 back On in the console
    assert read(activities) != applied
    assert read(activities) == {"us-east-1": 100, "us-west-2": 0}


def test_a_rollback_mid_shift_reaches_its_known_good_regions_by_the_controls_alone(twin):
    activities = dns(twin)
    apply(activities, FAILOVER, known_good=True)
    apply(activities, {"us-east-1": 25, "us-west-2": 75})  # a failback's shift step
    twin.board.update(route53_control_plane_down=True)
    changes = twin.aws.change_count
    back = apply(activities, FAILOVER, known_good=True)  # the rollback to the last good state
    assert (back.status, back.weights) == ("switched", FAILOVER)
    assert twin.aws.change_count == changes  # no record change: the control plane was not needed
    assert twin.routing_controls() == {"us-east-1": "Off", "us-west-2": "On"}
    assert read(activities) == FAILOVER

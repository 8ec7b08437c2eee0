"""DnsActivities against the twin: Route53 through the AWS front (moto behind it, real
boto3) and Cloud DNS through the emulator (real google-cloud-dns client), over real HTTP.

Effects are counted where they land: the front counts ChangeResourceRecordSets calls it
passed to moto, the emulator counts the change sets it accepted.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import botocore.exceptions
import pytest
from botocore.config import Config
from drpilot_twin.aws.front import AwsFront
from drpilot_twin.aws.moto_server import AWS_ENV
from drpilot_twin.aws.route53 import seed_route53
from drpilot_twin.clouddns import CloudDnsEmulator, seed_clouddns
from drpilot_twin.faults import FaultBoard
from temporalio.converter import DataConverter
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.contracts import DnsApplyInput, DnsReadInput
from activities.dns.activities import DnsActivities, current_weights
from activities.dns.clouddns import CloudDnsProvider, clouddns_client, managed_zone_name
from activities.dns.route53 import Route53Provider
from drpilot.domain.loader import load_runbook
from drpilot.domain.runbook import Runbook
from drpilot.domain.settings import ProviderSettings, Settings
from tests.support.aws import SPEED, aws_client
from tests.support.loopback import serving


@pytest.fixture(scope="module")
def emulator(board) -> Iterator[CloudDnsEmulator]:
    with serving(CloudDnsEmulator(board, speed=SPEED)) as server:
        yield server


def route53_client(front: AwsFront, **retries: Any):
    return aws_client("route53", front.url, Config(retries=retries or {"mode": "standard", "max_attempts": 3}))


@dataclass
class World:
    """One provider's twin, seeded with a runbook, and how to look at it."""

    provider: str
    runbook: Runbook
    activities: DnsActivities
    changes: Callable[[], int]  # change sets the twin accepted so far
    settings: Settings
    board: FaultBoard
    applied: str  # the provider's word for applied

    def pending(self, seconds: float) -> None:
        field = (
            "route53_pending_seconds" if self.provider == "route53" else "clouddns_pending_seconds"
        )
        self.board.update(**{field: seconds})

    def failover_weights(self) -> dict[str, int]:
        """All traffic to the last region (a standby / secondary in both examples)."""
        regions = list(self.runbook.regions)
        return {r: 100 if r == regions[-1] else 0 for r in regions}


@pytest.fixture(params=["route53", "clouddns"])
def world(request, front, emulator, board, runbook_paths) -> Iterator[World]:
    board.clear()
    if request.param == "route53":
        front.reset()
        runbook = load_runbook(next(p for p in runbook_paths if p.name == "llm-inference.yaml"))
        client = route53_client(front)
        seed_route53(client, runbook)
        world = World(
            "route53",
            runbook,
            DnsActivities(route53=client),
            lambda: front.change_count,
            Settings(),
            board,
            "INSYNC",
        )
    else:
        emulator.reset()
        runbook = load_runbook(
            next(p for p in runbook_paths if p.name == "llm-inference-clouddns.yaml")
        )
        seed_clouddns(emulator.url, runbook)
        settings = Settings(providers=ProviderSettings(clouddns_endpoint=emulator.url))
        client = clouddns_client(runbook.spec.dns.project, settings)
        world = World(
            "clouddns",
            runbook,
            DnsActivities(clouddns=client, settings=settings),
            lambda: emulator.change_count,
            settings,
            board,
            "done",
        )
    yield world
    board.clear()


def env_with(heartbeats: list | None = None, details: list | None = None) -> ActivityEnvironment:
    env = ActivityEnvironment()
    if heartbeats is not None:
        env.on_heartbeat = lambda *d: heartbeats.append(d[0])
    if details is not None:
        env.info = dataclasses.replace(env.info, heartbeat_details=details, attempt=2)
    return env


def apply(world: World, weights: dict[str, int], env: ActivityEnvironment | None = None):
    env = env or ActivityEnvironment()
    return env.run(
        world.activities.apply, DnsApplyInput(runbook=world.runbook, weights=weights, speed=SPEED)
    )


def read(world: World) -> dict[str, int]:
    state = ActivityEnvironment().run(world.activities.read, DnsReadInput(runbook=world.runbook))
    return state.weights()


# --------------------------------------------------------------------------- happy paths
def test_read_reports_the_seeded_normal_weights(world, front, monkeypatch):
    assert read(world) == world.runbook.normal_weights()
    # The traffic generator's view, built from settings + environment as `DIR/env` sets them.
    monkeypatch.setenv("AWS_ENDPOINT_URL", front.url)
    for key, value in AWS_ENV.items():
        monkeypatch.setenv(key, value)
    assert current_weights(world.runbook, DnsActivities.from_settings(world.settings)) == world.runbook.normal_weights()


def test_apply_moves_every_record_in_one_change_and_waits_until_applied(world):
    before = world.changes()
    weights = world.failover_weights()
    result = apply(world, weights)
    assert result.status == world.applied
    assert result.change_id
    assert result.weights == weights
    assert world.changes() == before + 1
    assert read(world) == weights


def test_applying_the_same_weights_twice_makes_one_change(world):
    before = world.changes()
    weights = world.failover_weights()
    first = apply(world, weights)
    second = apply(world, weights)
    assert first.status == world.applied
    assert second.status == "unchanged"
    assert second.change_id is None
    assert world.changes() == before + 1


def test_a_pending_change_is_waited_for_with_heartbeats(world):
    world.pending(30)  # 0.3 s at SPEED
    heartbeats: list[dict] = []
    result = apply(world, world.failover_weights(), env_with(heartbeats))
    assert result.status == world.applied
    statuses = [h["status"] for h in heartbeats]
    assert statuses[0].lower() == "pending"
    assert statuses[-1] == world.applied
    assert all(h["change_ids"] == [result.change_id] for h in heartbeats)
    assert len(heartbeats) >= 2 and result.seconds_to_apply > 0


# ----------------------------------------------------------------------- refusals
def test_zero_healthy_targets_is_refused_without_a_change(world):
    before = world.changes()
    zero = {r: 0 for r in world.runbook.regions}
    with pytest.raises(ApplicationError) as caught:
        apply(world, zero)
    assert caught.value.non_retryable
    assert world.changes() == before
    assert read(world) == world.runbook.normal_weights()


def test_fewer_serving_regions_than_the_guardrail_is_refused(world):
    data = world.runbook.model_dump(mode="json")
    data["spec"]["guardrails"] = {**data["spec"].get("guardrails", {}), "min_healthy_targets": 2}
    for region in data["spec"]["regions"].values():
        region["role"] = "active" if region["role"] == "standby" else region["role"]
    strict = Runbook.model_validate(data)
    world.runbook = strict
    before = world.changes()
    with pytest.raises(ApplicationError) as caught:
        apply(world, world.failover_weights())
    assert caught.value.non_retryable
    assert caught.value.type == "DnsGuardrail"
    assert "min_healthy_targets is 2" in caught.value.message
    assert world.changes() == before


@pytest.mark.parametrize(
    "weights, words",
    [({"mars-north-1": 100}, "unknown region"), ({}, "sum to 0")],
)
def test_weights_naming_unknown_regions_or_not_summing_to_100_are_refused(world, weights, words):
    with pytest.raises(ApplicationError) as caught:
        apply(world, weights)
    assert caught.value.non_retryable
    assert words in caught.value.message


def test_a_missing_zone_is_non_retryable_and_named(world, front, emulator):
    if world.provider == "route53":
        front.reset()
        zone = world.runbook.spec.dns.zone
    else:
        emulator.reset()
        zone = managed_zone_name(world.runbook)
    with pytest.raises(ApplicationError) as caught:
        apply(world, world.failover_weights())
    assert caught.value.non_retryable
    assert caught.value.type == "DnsZoneNotFound"
    assert zone in caught.value.message
    assert "spec.dns" in caught.value.message  # says what to fix


# ---------------------------------------------------------------------- throttling
def test_route53_throttling_is_retryable_and_names_the_zone(front, board, runbook_paths):
    board.clear()
    front.reset()
    runbook = load_runbook(next(p for p in runbook_paths if p.name == "llm-inference.yaml"))
    seed_route53(route53_client(front), runbook)
    activities = DnsActivities(route53=route53_client(front, total_max_attempts=1))
    board.update(route53_throttle_count=1000)
    try:
        with pytest.raises(ApplicationError) as caught:
            ActivityEnvironment().run(
                activities.apply,
                DnsApplyInput(runbook=runbook, weights={"us-west-2": 100}, speed=SPEED),
            )
    finally:
        board.clear()
    assert not caught.value.non_retryable
    assert caught.value.type == "DnsProviderBusy"
    assert "Throttling" in caught.value.message
    assert "Route53 zone example.com." in caught.value.message
    # The activity's retry (here: simply the next attempt) succeeds once the throttle ends.
    result = ActivityEnvironment().run(
        activities.apply, DnsApplyInput(runbook=runbook, weights={"us-west-2": 100}, speed=SPEED)
    )
    assert result.status == "INSYNC"


def test_a_short_throttle_is_ridden_out_by_botocore_retries(front, board, runbook_paths):
    board.clear()
    front.reset()
    runbook = load_runbook(next(p for p in runbook_paths if p.name == "llm-inference.yaml"))
    seed_route53(route53_client(front), runbook)
    activities = DnsActivities(route53=route53_client(front))  # standard mode, 3 attempts
    board.update(route53_throttle_count=1)
    result = ActivityEnvironment().run(
        activities.apply, DnsApplyInput(runbook=runbook, weights={"us-west-2": 100}, speed=SPEED)
    )
    assert result.status == "INSYNC"
    assert front.log.throttled == 1
    assert front.change_count == 2  # the seed and this one


# ---------------------------------------------------------------------- crash and resume
class Crash(Exception):
    """The worker died right after the heartbeat that recorded the change."""


def test_a_retry_after_a_crash_waits_on_the_same_change(world):
    world.pending(60)  # 0.6 s: the first attempt dies while the change is pending
    weights = world.failover_weights()
    recorded: list[Any] = []

    def die(*details: Any) -> None:
        recorded.append(details[0])
        raise Crash

    first = ActivityEnvironment()
    first.on_heartbeat = die
    before = world.changes()
    with pytest.raises(Crash):
        apply(world, weights, first)
    assert world.changes() == before + 1
    assert recorded[0]["status"].lower() == "pending"

    # Temporal hands the last heartbeat to the retry as payloads: round-trip it the same way.
    converter = DataConverter.default.payload_converter
    details = converter.from_payloads(converter.to_payloads(recorded))
    heartbeats: list[dict] = []
    result = apply(world, weights, env_with(heartbeats, details))
    assert result.status == world.applied
    assert result.change_id == ",".join(recorded[0]["change_ids"])
    assert world.changes() == before + 1  # waited on it; made no second change
    assert heartbeats and heartbeats[-1]["status"] == world.applied


def test_a_retry_after_a_crash_before_the_first_heartbeat_still_waits_until_applied(world):
    """The change was accepted but the attempt died before heartbeating its id: the retry
    finds the weights in place and must not report success while the change is pending."""
    world.pending(60)  # 0.6 s
    weights = world.failover_weights()
    provider = world.activities.provider(world.runbook)
    lost = provider.apply(world.runbook, weights)  # what the dead attempt did
    assert provider.refresh(lost).status != world.applied
    before = world.changes()

    heartbeats: list[dict] = []
    result = apply(world, weights, env_with(heartbeats, details=[]))
    assert provider.refresh(lost).status == world.applied  # not returned while pending
    assert heartbeats, "waiting heartbeats"
    assert read(world) == weights
    if world.provider == "route53":  # cannot list pending changes: confirmed by a fresh one
        assert world.changes() == before + 1 and result.status == "INSYNC"
    else:  # waited on the listed pending change; made none
        assert world.changes() == before and result.status == "unchanged"


def test_heartbeat_details_for_other_weights_do_not_hijack_a_new_apply(world):
    # Real details of a real, applied change (zone and change id the provider knows), so
    # only the weights they were recorded for tell the new apply that they are not its own.
    beats: list[dict] = []
    first = apply(world, world.failover_weights(), env_with(beats))
    assert beats and beats[-1]["change_ids"] == first.change_id.split(",")
    converter = DataConverter.default.payload_converter
    details = converter.from_payloads(converter.to_payloads([beats[-1]]))
    before = world.changes()
    back = world.runbook.normal_weights()
    result = apply(world, back, env_with([], details))
    assert result.change_id not in (None, first.change_id)
    assert world.changes() == before + 1
    assert read(world) == back


# ---------------------------------------------------------------------- provider details
def test_route53_batches_over_100_changes_are_split(front, board, runbook_paths):
    board.clear()
    front.reset()
    data = load_runbook(
        next(p for p in runbook_paths if p.name == "llm-inference.yaml")
    ).model_dump(mode="json")
    record = data["spec"]["dns"]["records"][0]
    data["spec"]["dns"]["records"] = [
        {**record, "name": f"inference-{i:02d}.example.com."} for i in range(51)
    ]  # 51 records x 2 regions = 102 UPSERTs
    runbook = Runbook.model_validate(data)
    client = route53_client(front)
    seed_route53(client, runbook)
    assert front.change_count == 2
    result = ActivityEnvironment().run(
        DnsActivities(route53=client).apply,
        DnsApplyInput(runbook=runbook, weights={"us-west-2": 100}, speed=SPEED),
    )
    assert len(result.change_id.split(",")) == 2
    assert front.change_count == 4
    state = Route53Provider(client).read(runbook)
    assert all(r.weights == {"us-east-1": 0, "us-west-2": 100} for r in state.records)


def test_cloud_dns_items_are_read_by_target_whatever_their_order(emulator, board, runbook_paths):
    board.clear()
    emulator.reset()
    runbook = load_runbook(
        next(p for p in runbook_paths if p.name == "llm-inference-clouddns.yaml")
    )
    seed_clouddns(emulator.url, runbook)
    settings = Settings(providers=ProviderSettings(clouddns_endpoint=emulator.url))
    provider = CloudDnsProvider(clouddns_client(runbook.spec.dns.project, settings))
    record = runbook.spec.dns.records[0]
    zone = f"/projects/{runbook.spec.dns.project}/managedZones/{managed_zone_name(runbook)}"
    [held] = provider._rrsets(runbook, record)
    shuffled = {
        "name": record.name,
        "type": "A",
        "ttl": record.ttl,
        "routingPolicy": {
            "wrr": {
                "items": [  # someone rewrote it by hand, in another order
                    {"weight": 70, "rrdatas": [record.targets["asia-southeast1"]]},
                    {"weight": 30, "rrdatas": [record.targets["us-central1"]]},
                    {"weight": 0, "rrdatas": [record.targets["europe-west4"]]},
                ]
            }
        },
    }
    provider.client._connection.api_request(
        method="POST",
        path=f"{zone}/changes",
        data={"deletions": [held], "additions": [shuffled]},
    )
    assert provider.read(runbook).weights() == {
        "us-central1": 30,
        "europe-west4": 0,
        "asia-southeast1": 70,
    }
    # Targets nobody recognises (e.g. IPs renumbered) fall back to the runbook's order.
    [held] = provider._rrsets(runbook, record)
    renumbered = {**shuffled, "routingPolicy": {"wrr": {"items": [
        {"weight": 10, "rrdatas": ["198.51.100.1"]},
        {"weight": 20, "rrdatas": ["198.51.100.2"]},
        {"weight": 70, "rrdatas": ["198.51.100.3"]},
    ]}}}  # fmt: skip
    provider.client._connection.api_request(
        method="POST", path=f"{zone}/changes", data={"deletions": [held], "additions": [renumbered]}
    )
    assert provider.read(runbook).weights() == {
        "us-central1": 10,
        "europe-west4": 20,
        "asia-southeast1": 70,
    }
    # and applying puts the runbook's targets back, in one atomic change.
    before = emulator.change_count
    weights = {"us-central1": 50, "europe-west4": 50, "asia-southeast1": 0}
    result = ActivityEnvironment().run(
        DnsActivities(clouddns=provider.client, settings=settings).apply,
        DnsApplyInput(runbook=runbook, weights=weights, speed=SPEED),
    )
    assert result.status == "done"
    assert emulator.change_count == before + 1
    assert provider.matches(runbook, weights, provider.current(runbook))


def test_route53_errors_are_classified_by_code(front, runbook_paths):
    runbook = load_runbook(next(p for p in runbook_paths if p.name == "llm-inference.yaml"))
    provider = Route53Provider(route53_client(front))

    def raised(code: str, status: int) -> ApplicationError:
        error = botocore.exceptions.ClientError(
            {
                "Error": {"Code": code, "Message": "m"},
                "ResponseMetadata": {"HTTPStatusCode": status},
            },
            "ChangeResourceRecordSets",
        )
        with pytest.raises(ApplicationError) as caught, provider._errors(runbook, "change", "Z1"):
            raise error
        return caught.value

    assert not raised("Throttling", 400).non_retryable
    assert not raised("PriorRequestNotComplete", 400).non_retryable
    assert not raised("InternalError", 500).non_retryable
    for code in ("AccessDenied", "NoSuchHostedZone", "InvalidChangeBatch"):
        error = raised(code, 403 if code == "AccessDenied" else 400)
        assert error.non_retryable, code
        assert "Z1" in error.message and "inference.example.com." in error.message
        assert "Fix:" in error.message
    assert "route53:ChangeResourceRecordSets" in raised("AccessDenied", 403).message


def test_route53_leftover_set_identifiers_are_read_past_and_left_alone(front, board, runbook_paths):
    board.clear()
    front.reset()
    runbook = load_runbook(next(p for p in runbook_paths if p.name == "llm-inference.yaml"))
    client = route53_client(front)
    zone_id = seed_route53(client, runbook)
    leftovers = [
        {
            "Action": "UPSERT",
            "ResourceRecordSet": {
                "Name": "inference.example.com.",
                "Type": "CNAME",
                "SetIdentifier": f"eu-old-{i}",
                "Weight": 0,
                "TTL": 60,
                "ResourceRecords": [{"Value": f"old{i}.example.com."}],
            },
        }
        for i in range(6)
    ]  # more sets under one name than a page of the per-record listing holds
    client.change_resource_record_sets(HostedZoneId=zone_id, ChangeBatch={"Changes": leftovers})
    result = ActivityEnvironment().run(
        DnsActivities(route53=client).apply,
        DnsApplyInput(runbook=runbook, weights={"us-west-2": 100}, speed=SPEED),
    )
    assert result.status == "INSYNC"
    listed = client.list_resource_record_sets(HostedZoneId=zone_id)["ResourceRecordSets"]
    weights = {r["SetIdentifier"]: r["Weight"] for r in listed if "SetIdentifier" in r}
    assert weights == {"us-east-1": 0, "us-west-2": 100, **{f"eu-old-{i}": 0 for i in range(6)}}


def test_a_retry_holding_a_change_the_provider_never_made_reads_and_applies(world):
    converter = DataConverter.default.payload_converter
    ghost = {
        "provider": world.provider,
        "zone": (
            "/projects/ml-platform-prod/managedZones/example-dev"
            if world.provider == "clouddns"
            else "Z0"
        ),
        "change_ids": ["C0GHOST0" if world.provider == "route53" else "999"],
        "status": "PENDING",
        "submitted": 0.0,
        "weights": world.failover_weights(),
    }
    details = converter.from_payloads(converter.to_payloads([ghost]))
    before = world.changes()
    result = apply(world, world.failover_weights(), env_with([], details))
    assert result.status == world.applied
    assert result.change_id not in ("C0GHOST0", "999")
    assert world.changes() == before + 1
    assert read(world) == world.failover_weights()

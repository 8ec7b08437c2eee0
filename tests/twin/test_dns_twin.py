"""The twin's DNS and AWS front through the plain client libraries (no drpilot code between):
boto3 against the AWS front (moto behind it), google-cloud-dns against the Cloud DNS
emulator. Each fault mode the front adds is shown the way a client sees it."""

from __future__ import annotations

import base64
import hashlib
import io
import os
import time

import boto3
import pytest
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import ClientError
from drpilot_twin.aws.front import AwsFront
from drpilot_twin.aws.moto_server import AWS_ENV
from drpilot_twin.aws.route53 import seed_route53
from drpilot_twin.clouddns import CloudDnsEmulator, seed_clouddns
from drpilot_twin.faults import FaultBoard
from google.api_core import exceptions as google_errors
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import dns

from drpilot.domain.loader import load_runbook

SPEED = 100.0  # 30 simulated seconds of PENDING = 0.3 s here


@pytest.fixture(scope="module")
def board():
    return FaultBoard()


def _running(server):
    server.start()
    yield server
    server.stop()


def _fresh(server, board):
    """The module's server emptied, with no fault left over from the test before."""
    server.reset()
    board.clear()
    yield server
    board.clear()


@pytest.fixture(scope="module")
def front(board):
    yield from _running(AwsFront(board, speed=SPEED))


@pytest.fixture(scope="module")
def clouddns_server(board):
    yield from _running(CloudDnsEmulator(board, speed=SPEED))


@pytest.fixture
def aws(front, board):
    yield from _fresh(front, board)


@pytest.fixture
def gdns(clouddns_server, board):
    yield from _fresh(clouddns_server, board)


def client(front: AwsFront, service: str, **config):
    return boto3.client(
        service,
        endpoint_url=front.url,
        region_name=AWS_ENV["AWS_DEFAULT_REGION"],
        aws_access_key_id=AWS_ENV["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=AWS_ENV["AWS_SECRET_ACCESS_KEY"],
        config=Config(**config) if config else None,
    )


@pytest.fixture(scope="module")
def route53_runbook(runbook_paths):
    return load_runbook(next(p for p in runbook_paths if p.name == "llm-inference.yaml"))


@pytest.fixture(scope="module")
def clouddns_runbook(runbook_paths):
    return load_runbook(next(p for p in runbook_paths if p.name == "llm-inference-clouddns.yaml"))


def weighted_sets(r53, zone_id: str, name: str) -> dict[str, dict]:
    listed = r53.list_resource_record_sets(HostedZoneId=zone_id)["ResourceRecordSets"]
    return {r["SetIdentifier"]: r for r in listed if r["Name"] == name and "SetIdentifier" in r}


def upsert(r53, zone_id: str, weight: int = 10) -> dict:
    return r53.change_resource_record_sets(
        HostedZoneId=zone_id,
        ChangeBatch={
            "Changes": [
                {
                    "Action": "UPSERT",
                    "ResourceRecordSet": {
                        "Name": "inference.example.com.",
                        "Type": "CNAME",
                        "SetIdentifier": "us-east-1",
                        "Weight": weight,
                        "TTL": 60,
                        "ResourceRecords": [{"Value": "lb-use1.example.com."}],
                    },
                }
            ]
        },
    )["ChangeInfo"]


# ------------------------------------------------------------------------------ Route53
def test_seeded_zone_holds_one_weighted_record_set_per_region(aws, route53_runbook):
    r53 = client(aws, "route53")
    zone_id = seed_route53(r53, route53_runbook)
    zones = r53.list_hosted_zones_by_name(DNSName="example.com.")["HostedZones"]
    assert [z["Id"].rsplit("/", 1)[-1] for z in zones if z["Name"] == "example.com."] == [zone_id]
    record = route53_runbook.spec.dns.records[0]
    sets = weighted_sets(r53, zone_id, record.name)
    assert set(sets) == {"us-east-1", "us-west-2"}
    for region, weight in route53_runbook.normal_weights().items():
        held = sets[record.set_identifier(region)]
        assert held["Weight"] == weight
        assert held["TTL"] == record.ttl
        assert held["Type"] == "CNAME"
        assert held["ResourceRecords"] == [{"Value": record.targets[region]}]
    assert {r: sets[r]["Weight"] for r in sets} == {"us-east-1": 100, "us-west-2": 0}


def test_a_runbook_pinned_hosted_zone_id_is_served_by_the_front(aws, board, route53_runbook):
    """Production runbooks pin `spec.dns.zone_id`; moto chooses its own ids. Through the front
    the pinned id reads, changes and describes the seeded zone like Route53 would."""
    pinned = "Z0PINNED4DRPILOT"
    dns = route53_runbook.spec.dns.model_copy(update={"zone_id": f"/hostedzone/{pinned}"})
    runbook = route53_runbook.model_copy(update={"spec": route53_runbook.spec.model_copy(update={"dns": dns})})
    r53 = client(aws, "route53")
    with pytest.raises(ClientError) as unknown:
        r53.get_hosted_zone(Id=pinned)
    assert unknown.value.response["Error"]["Code"] == "NoSuchHostedZone"
    aws.alias_hosted_zone(runbook.spec.dns.zone_id, seed_route53(r53, runbook))

    assert r53.get_hosted_zone(Id=pinned)["HostedZone"]["Id"] == f"/hostedzone/{pinned}"
    record = runbook.spec.dns.records[0]
    assert {r: s["Weight"] for r, s in weighted_sets(r53, pinned, record.name).items()} == {
        "us-east-1": 100, "us-west-2": 0
    }
    board.update(route53_pending_seconds=30)  # 0.3 s: changes under the pinned id are faulted too
    change = upsert(r53, pinned, weight=7)
    assert change["Status"] == "PENDING"
    assert weighted_sets(r53, pinned, record.name)["us-east-1"]["Weight"] == 7
    deadline = time.monotonic() + 10
    while r53.get_change(Id=change["Id"])["ChangeInfo"]["Status"] != "INSYNC":
        assert time.monotonic() < deadline, "never INSYNC"
        time.sleep(0.05)


def _session_args() -> dict[str, str]:
    return {
        "aws_access_key_id": AWS_ENV["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": AWS_ENV["AWS_SECRET_ACCESS_KEY"],
        "region_name": AWS_ENV["AWS_DEFAULT_REGION"],
    }


def test_seeding_twice_leaves_one_zone_and_the_same_records(aws, route53_runbook, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", aws.url)
    session = boto3.session.Session(**_session_args())
    first = seed_route53(session, route53_runbook)
    changes = aws.change_count
    assert seed_route53(session, route53_runbook) == first
    assert aws.change_count == changes  # nothing to change the second time
    r53 = session.client("route53")
    zones = r53.list_hosted_zones()["HostedZones"]
    assert len(zones) == 1
    assert len(weighted_sets(r53, first, "inference.example.com.")) == 2


def test_one_endpoint_serves_route53_and_s3_through_aws_endpoint_url(aws, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", aws.url)
    for key, value in AWS_ENV.items():
        monkeypatch.setenv(key, value)
    r53 = boto3.client("route53")
    s3 = boto3.client("s3")
    zone_id = r53.create_hosted_zone(Name="example.com.", CallerReference="env")["HostedZone"]["Id"]
    upsert(r53, zone_id)
    s3.create_bucket(Bucket="through-env")
    s3.put_object(Bucket="through-env", Key="k", Body=b"v")
    assert aws.change_count == 1  # the front saw the Route53 change ...
    moto_s3 = client_for_url(aws.upstream, "s3")
    assert (
        moto_s3.get_object(Bucket="through-env", Key="k")["Body"].read() == b"v"
    )  # ... moto has it


def client_for_url(url: str, service: str):
    return boto3.client(service, endpoint_url=url, **_session_args())


def test_change_stays_pending_then_insync_with_its_own_id(aws, board):
    r53 = client(aws, "route53")
    zone_id = r53.create_hosted_zone(Name="example.com.", CallerReference="p")["HostedZone"]["Id"]
    board.update(route53_pending_seconds=30)  # 0.3 s at SPEED
    first = upsert(r53, zone_id, weight=10)
    second = upsert(r53, zone_id, weight=20)
    assert first["Status"] == second["Status"] == "PENDING"
    assert first["Id"] != second["Id"]
    assert first["Id"].startswith("/change/C")
    assert r53.get_change(Id=first["Id"])["ChangeInfo"]["Status"] == "PENDING"
    statuses = []
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        statuses.append(r53.get_change(Id=first["Id"])["ChangeInfo"]["Status"])
        if statuses[-1] == "INSYNC":
            break
        time.sleep(0.05)
    assert statuses[-1] == "INSYNC" and statuses[0] == "PENDING"
    # The boto3 waiter drpilot's users know works too.
    r53.get_waiter("resource_record_sets_changed").wait(
        Id=second["Id"], WaiterConfig={"Delay": 1, "MaxAttempts": 5}
    )
    # and the change did reach moto: the record holds the second weight.
    assert weighted_sets(r53, zone_id, "inference.example.com.")["us-east-1"]["Weight"] == 20


def test_without_pending_time_a_change_is_insync_at_the_first_get_change(aws):
    r53 = client(aws, "route53")
    zone_id = r53.create_hosted_zone(Name="example.com.", CallerReference="q")["HostedZone"]["Id"]
    change = upsert(r53, zone_id)
    assert change["Status"] == "PENDING"  # Route53 never answers a new change INSYNC
    assert r53.get_change(Id=change["Id"])["ChangeInfo"]["Status"] == "INSYNC"


def test_throttling_is_a_client_error_with_code_throttling(aws, board):
    r53 = client(aws, "route53", retries={"total_max_attempts": 1})
    board.update(route53_throttle_count=2)
    for _ in range(2):
        with pytest.raises(ClientError) as caught:
            r53.list_hosted_zones()
        error = caught.value.response
        assert error["Error"]["Code"] == "Throttling"
        assert error["Error"]["Message"] == "Rate exceeded"
        assert error["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert r53.list_hosted_zones()["HostedZones"] == []  # the fault is used up
    assert board.now.route53_throttle_count == 0
    assert aws.log.throttled == 2


def test_boto3_standard_retries_ride_out_a_short_throttle(aws, board):
    r53 = client(aws, "route53", retries={"mode": "standard", "max_attempts": 3})
    board.update(route53_throttle_count=1)
    reply = r53.list_hosted_zones()
    assert reply["ResponseMetadata"]["RetryAttempts"] == 1
    assert aws.log.throttled == 1


def test_weights_outside_route53_bounds_are_refused(aws):
    r53 = client(aws, "route53")
    zone_id = r53.create_hosted_zone(Name="example.com.", CallerReference="w")["HostedZone"]["Id"]
    with pytest.raises(ClientError) as caught:
        upsert(r53, zone_id, weight=256)
    assert caught.value.response["Error"]["Code"] == "InvalidInput"
    assert aws.change_count == 0


# ------------------------------------------------------------------------------ S3 / Glacier
def test_glacier_restore_stays_ongoing_for_the_delay(aws, board):
    s3 = client(aws, "s3")
    s3.create_bucket(Bucket="model-archive")
    key = "llm-7b/2024-01-15/weights 00+01.safetensors"  # spaces and '+' survive the front
    s3.put_object(Bucket="model-archive", Key=key, Body=b"w" * 64, StorageClass="GLACIER")
    with pytest.raises(ClientError) as archived:
        s3.get_object(Bucket="model-archive", Key=key)
    assert archived.value.response["Error"]["Code"] == "InvalidObjectState"

    board.update(glacier_delay_seconds=40)  # 0.4 s at SPEED
    restore = {"Days": 1, "GlacierJobParameters": {"Tier": "Expedited"}}
    reply = s3.restore_object(Bucket="model-archive", Key=key, RestoreRequest=restore)
    assert reply["ResponseMetadata"]["HTTPStatusCode"] == 202
    assert s3.head_object(Bucket="model-archive", Key=key)["Restore"] == 'ongoing-request="true"'
    with pytest.raises(ClientError) as ongoing:
        s3.get_object(Bucket="model-archive", Key=key)
    assert ongoing.value.response["Error"]["Code"] == "InvalidObjectState"
    assert ongoing.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    with pytest.raises(ClientError) as again:
        s3.restore_object(Bucket="model-archive", Key=key, RestoreRequest=restore)
    assert again.value.response["Error"]["Code"] == "RestoreAlreadyInProgress"
    assert again.value.response["ResponseMetadata"]["HTTPStatusCode"] == 409
    s3.create_bucket(Bucket="models-usw2")
    with pytest.raises(ClientError) as copy:
        s3.copy_object(
            Bucket="models-usw2", Key=key, CopySource={"Bucket": "model-archive", "Key": key}
        )
    assert copy.value.response["Error"]["Code"] == "InvalidObjectState"
    assert aws.restore_count("model-archive", key) == 2

    deadline = time.monotonic() + 5
    while "true" in s3.head_object(Bucket="model-archive", Key=key)["Restore"]:
        assert time.monotonic() < deadline, "restore never finished"
        time.sleep(0.05)
    head = s3.head_object(Bucket="model-archive", Key=key)
    assert head["Restore"].startswith('ongoing-request="false"')
    assert head["StorageClass"] == "GLACIER"
    assert s3.get_object(Bucket="model-archive", Key=key)["Body"].read() == b"w" * 64
    s3.copy_object(
        Bucket="models-usw2", Key=key, CopySource={"Bucket": "model-archive", "Key": key}
    )
    assert s3.get_object(Bucket="models-usw2", Key=key)["Body"].read() == b"w" * 64


def test_uploads_with_checksums_and_streamed_downloads_pass_through(aws):
    s3 = client(aws, "s3")
    s3.create_bucket(Bucket="models-use1")
    data = os.urandom(3 * 1024 * 1024 + 17)
    digest = base64.b64encode(hashlib.sha256(data).digest()).decode()
    put = s3.put_object(Bucket="models-use1", Key="one.bin", Body=data, ChecksumAlgorithm="SHA256")
    assert put["ChecksumSHA256"] == digest
    got = s3.get_object(Bucket="models-use1", Key="one.bin", ChecksumMode="ENABLED")
    assert got["ChecksumSHA256"] == digest
    streamed = b"".join(got["Body"].iter_chunks(chunk_size=64 * 1024))
    assert streamed == data
    ranged = s3.get_object(Bucket="models-use1", Key="one.bin", Range="bytes=100-199")
    assert ranged["Body"].read() == data[100:200]

    # Multipart upload (three 5 MiB-ish parts) with SHA256 part checksums, from a stream.
    big = os.urandom(11 * 1024 * 1024)
    transfer = TransferConfig(
        multipart_threshold=5 * 1024 * 1024, multipart_chunksize=5 * 1024 * 1024
    )
    s3.upload_fileobj(
        io.BytesIO(big),
        "models-use1",
        "big.bin",
        ExtraArgs={"ChecksumAlgorithm": "SHA256"},
        Config=transfer,
    )
    head = s3.head_object(Bucket="models-use1", Key="big.bin", ChecksumMode="ENABLED")
    assert head["ContentLength"] == len(big)
    part = 5 * 1024 * 1024
    parts = [hashlib.sha256(big[i : i + part]).digest() for i in range(0, len(big), part)]
    composite = base64.b64encode(hashlib.sha256(b"".join(parts)).digest()).decode()
    assert head["ChecksumSHA256"].split("-")[0] == composite  # checksum of the part checksums
    body = s3.get_object(Bucket="models-use1", Key="big.bin")["Body"].read()
    assert body == big


# ------------------------------------------------------------------------------ Cloud DNS
def gclient(server: CloudDnsEmulator, project: str) -> dns.Client:
    return dns.Client(
        project=project,
        credentials=AnonymousCredentials(),
        client_options=ClientOptions(api_endpoint=server.url),
    )


def test_seeded_managed_zone_holds_a_wrr_record_in_region_order(gdns, clouddns_runbook):
    name = seed_clouddns(gdns.url, clouddns_runbook)
    assert name == clouddns_runbook.spec.dns.managed_zone
    project = clouddns_runbook.spec.dns.project
    gc = gclient(gdns, project)
    assert [(z.name, z.dns_name) for z in gc.list_zones()] == [(name, "example.dev.")]
    zone = gc.zone(name)
    assert zone.exists()
    zone.reload()
    assert len(zone.name_servers) == 4
    # The library has no routingPolicy model: read through its own connection.
    record = clouddns_runbook.spec.dns.records[0]
    reply = gc._connection.api_request(
        method="GET",
        path=f"/projects/{project}/managedZones/{name}/rrsets",
        query_params={"name": record.name, "type": "A"},
    )
    [rrset] = reply["rrsets"]
    assert rrset["ttl"] == record.ttl
    assert "rrdatas" not in rrset
    items = rrset["routingPolicy"]["wrr"]["items"]
    weights = clouddns_runbook.normal_weights()
    assert [(i["rrdatas"], i["weight"]) for i in items] == [
        ([record.targets[r]], weights[r]) for r in clouddns_runbook.regions
    ]
    assert sum(i["weight"] for i in items) == 100
    seed_clouddns(gdns.url, clouddns_runbook)  # idempotent
    assert gdns.change_count == 1


def test_cloud_dns_change_is_pending_then_done_through_the_client(gdns, board):
    gc = gclient(gdns, "rehearsal")
    zone = gc.zone("example-dev", "example.dev.", description="test")
    zone.create()
    board.update(clouddns_pending_seconds=30)  # 0.3 s at SPEED
    change = zone.changes()
    change.add_record_set(zone.resource_record_set("www.example.dev.", "A", 300, ["203.0.113.1"]))
    change.create()
    assert change.status == "pending"
    assert change.name == "1"  # "0" is the zone's creation
    deadline = time.monotonic() + 5
    while change.status != "done":
        assert time.monotonic() < deadline, "change never done"
        time.sleep(0.05)
        change.reload()
    records = {(r.name, r.record_type): r for r in zone.list_resource_record_sets()}
    assert records[("www.example.dev.", "A")].rrdatas == ["203.0.113.1"]
    assert {t for (_, t) in records} == {"A", "NS", "SOA"}


def test_cloud_dns_changes_are_atomic_and_checked_like_the_api(gdns):
    gc = gclient(gdns, "rehearsal")
    zone = gc.zone("example-dev", "example.dev.", description="test")
    zone.create()
    www = zone.resource_record_set("www.example.dev.", "A", 300, ["203.0.113.1"])
    first = zone.changes()
    first.add_record_set(www)
    first.create()

    duplicate = zone.changes()
    duplicate.add_record_set(www)
    with pytest.raises(google_errors.Conflict):
        duplicate.create()

    stale = zone.changes()  # deletion that does not match what is held
    stale.delete_record_set(zone.resource_record_set("www.example.dev.", "A", 60, ["203.0.113.1"]))
    with pytest.raises(google_errors.PreconditionFailed):
        stale.create()

    half = zone.changes()  # a good deletion + a missing one: nothing happens at all
    half.delete_record_set(www)
    half.delete_record_set(zone.resource_record_set("api.example.dev.", "A", 300, ["203.0.113.9"]))
    with pytest.raises(google_errors.NotFound):
        half.create()
    names = {r.name for r in zone.list_resource_record_sets()}
    assert "www.example.dev." in names

    outside = zone.changes()
    outside.add_record_set(zone.resource_record_set("www.example.com.", "A", 300, ["203.0.113.1"]))
    with pytest.raises(google_errors.BadRequest):
        outside.create()

    replace = zone.changes()  # delete + add of the same rrset in one change is the update
    replace.delete_record_set(www)
    replace.add_record_set(zone.resource_record_set("www.example.dev.", "A", 300, ["203.0.113.2"]))
    replace.create()
    held = {r.name: r.rrdatas for r in zone.list_resource_record_sets()}
    assert held["www.example.dev."] == ["203.0.113.2"]
    assert gdns.change_count == 2


def test_missing_zone_is_404_and_region_down_does_not_touch_dns(gdns, board, clouddns_runbook):
    gc = gclient(gdns, "rehearsal")
    assert not gc.zone("nope").exists()
    seed_clouddns(gdns.url, clouddns_runbook)
    board.update(region_down=list(clouddns_runbook.regions))
    gc = gclient(gdns, clouddns_runbook.spec.dns.project)
    assert gc.zone(clouddns_runbook.spec.dns.managed_zone).exists()


def test_get_change_knows_only_changes_route53_made(aws):
    r53 = client(aws, "route53")
    created = r53.create_hosted_zone(Name="example.com.", CallerReference="c")["ChangeInfo"]
    assert r53.get_change(Id=created["Id"])["ChangeInfo"]["Status"] == "INSYNC"
    with pytest.raises(ClientError) as caught:
        r53.get_change(Id="/change/C0NEVERMADE")
    assert caught.value.response["Error"]["Code"] == "NoSuchChange"
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404

"""The twin as a whole: `drpilot sandbox up` for a Route 53 and a Cloud DNS example (between them
every provider the twin stands in for; see SANDBOX_EXAMPLES), read and changed through
the plain provider SDKs configured only by DIR/env, every fault mode observed through them,
and nothing left running afterwards.

The process tests share one sandbox per runbook (module scope, started with --speed 30);
each test clears the faults it set. `test_zz_*` run last on purpose: they stop it.
"""

from __future__ import annotations

import functools
import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from drpilot_twin.gcs import gcs_client, split_gs_uri
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import dns
from kubernetes import client as kube
from kubernetes import config as kube_config
from kubernetes.client.rest import ApiException

from drpilot.domain.loader import load_runbook
from drpilot.domain.runbook import Role, Runbook, Workload
from drpilot.domain.settings import load_settings
from tests.support.paths import CLOUDDNS_RUNBOOK, DRPILOT, ROOT, ROUTE53_RUNBOOK
from tests.support.twin import (
    SANDBOX_EXAMPLES,
    SandboxProcess,
    parse_env_file,
    process_gone,
    wait_gone,
)
from tests.support.twin import eventually as poll

SPEED = 30.0  # pods start in 1 s instead of 30, a 30 s fault lasts 1 s
pytestmark = pytest.mark.e2e


# Across processes: polled less often, and a read that fails meanwhile (a part restarting)
# is read again.
eventually = functools.partial(
    poll, timeout=15.0, interval=0.1, retrying=(AssertionError, ApiException, ClientError, httpx.HTTPError)
)


def processes_mentioning(state_dir: Path) -> list[int]:
    """Every live process whose command line names the state directory: each child the
    sandbox starts does (its database, config or storage lives there), and so does `up`."""
    needle = str(state_dir.resolve()).encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle in (entry / "cmdline").read_bytes() and not process_gone(int(entry.name)):
                found.append(int(entry.name))
        except OSError:
            continue
    return found


# ------------------------------------------------------------------ the twin, as a user sees it
class Clients:
    """Plain SDK clients configured the way `source DIR/env` configures them: the process
    environment (AWS_*, KUBECONFIG, DRPILOT_CLOUDDNS_ENDPOINT) and nothing else."""

    def __init__(self, sandbox: SandboxProcess, runbook: Runbook):
        self.sandbox = sandbox
        self.runbook = runbook
        self.env = sandbox.env()

    def aws(self, service: str, **config: Any):
        # A fresh session reads AWS_ENDPOINT_URL and the credentials from os.environ now.
        return boto3.session.Session().client(service, config=Config(**config) if config else None)

    def kube(self, region: str) -> kube.ApiClient:
        context = self.runbook.regions[region].kube.context
        return kube_config.new_client_from_config(config_file=os.environ["KUBECONFIG"], context=context)

    def apps(self, region: str) -> kube.AppsV1Api:
        return kube.AppsV1Api(self.kube(region))

    def clouddns(self) -> dns.Client:
        return dns.Client(
            project=self.runbook.spec.dns.project,
            credentials=AnonymousCredentials(),
            client_options=ClientOptions(api_endpoint=os.environ["DRPILOT_CLOUDDNS_ENDPOINT"]),
        )

    @property
    def other_region(self) -> str:
        """The first region that is not the primary."""
        return next(r for r in self.runbook.regions if r != self.runbook.primary)

    def seeded(self, region: str) -> tuple[Workload, int]:
        """The region's first workload and the replicas the twin seeded it with."""
        workload = self.runbook.workloads_in(region)[0]
        return workload, _desired(self.runbook, region, workload.replicas)

    def endpoint(self, region: str) -> str:
        """The loopback URL standing for the region's runbook endpoint (DRPILOT_ENDPOINT_MAP)."""
        return json.loads(os.environ["DRPILOT_ENDPOINT_MAP"])[self.runbook.regions[region].endpoint.rstrip("/")]

    def fault(self, *args: str) -> str:
        return self.sandbox.cli("fault", *args).stdout

    def status(self) -> dict[str, Any]:
        return json.loads(self.sandbox.cli("status", "--json").stdout)

    # ---------------------------------------------------------------- DNS, either provider
    def weights(self) -> dict[str, int]:
        """Weight per region of the first record, read with the provider's own SDK."""
        record = self.runbook.spec.dns.records[0]
        if self.runbook.spec.dns.provider.value == "route53":
            r53 = self.aws("route53")
            zone = r53.list_hosted_zones_by_name(DNSName=self.runbook.spec.dns.zone)["HostedZones"][0]
            sets = r53.list_resource_record_sets(HostedZoneId=zone["Id"])["ResourceRecordSets"]
            return {s["SetIdentifier"]: s["Weight"] for s in sets if s["Name"] == record.name and "SetIdentifier" in s}
        rrset = self.wrr_rrset(record.name)
        by_target = {t: r for r, t in record.targets.items()}
        return {by_target[item["rrdatas"][0]]: int(item["weight"]) for item in rrset["routingPolicy"]["wrr"]["items"]}

    def wrr_rrset(self, name: str) -> dict[str, Any]:
        # google-cloud-dns has no model of routingPolicy (docs/architecture.md, "Activities"):
        # its own connection sends the documented Cloud DNS v1 JSON.
        client = self.clouddns()
        path = f"/projects/{client.project}/managedZones/{self.runbook.spec.dns.managed_zone}/rrsets"
        rrsets = client._connection.api_request(method="GET", path=path)["rrsets"]
        return next(r for r in rrsets if r["name"] == name)

    def set_weights(self, weights: dict[str, int]) -> str:
        """One provider change to `weights`; returns the change id."""
        dns_spec = self.runbook.spec.dns
        if dns_spec.provider.value == "route53":
            r53 = self.aws("route53")
            zone_id = r53.list_hosted_zones_by_name(DNSName=dns_spec.zone)["HostedZones"][0]["Id"]
            changes = [
                {
                    "Action": "UPSERT",
                    "ResourceRecordSet": {
                        "Name": record.name, "Type": record.type.value, "TTL": record.ttl,
                        "SetIdentifier": record.set_identifier(region), "Weight": weights[region],
                        "ResourceRecords": [{"Value": record.targets[region]}],
                    },
                }
                for record in dns_spec.records
                for region in self.runbook.regions
            ]
            reply = r53.change_resource_record_sets(HostedZoneId=zone_id, ChangeBatch={"Changes": changes})
            return reply["ChangeInfo"]["Id"]
        client = self.clouddns()
        deletions, additions = [], []
        for record in dns_spec.records:
            old = self.wrr_rrset(record.name)
            new = {
                "name": record.name, "type": record.type.value, "ttl": record.ttl,
                "routingPolicy": {"wrr": {"items": [
                    {"weight": weights[r], "rrdatas": [record.targets[r]]} for r in self.runbook.regions
                ]}},
            }
            deletions.append(old)
            additions.append(new)
        path = f"/projects/{client.project}/managedZones/{dns_spec.managed_zone}/changes"
        reply = client._connection.api_request(method="POST", path=path, data={"additions": additions, "deletions": deletions})
        return reply["id"]

    def change_status(self, change_id: str) -> str:
        if self.runbook.spec.dns.provider.value == "route53":
            return self.aws("route53").get_change(Id=change_id)["ChangeInfo"]["Status"]
        # Changes.reload() would parse the wrr additions, which the library cannot model.
        client = self.clouddns()
        path = f"/projects/{client.project}/managedZones/{self.runbook.spec.dns.managed_zone}/changes/{change_id}"
        return client._connection.api_request(method="GET", path=path)["status"]


@pytest.fixture(scope="module", params=SANDBOX_EXAMPLES, ids=lambda p: p.stem)
def sandbox(request, tmp_path_factory) -> Iterator[SandboxProcess]:
    process = SandboxProcess(request.param, tmp_path_factory.mktemp(request.param.stem), "--speed", f"{SPEED:g}")
    process.start()
    print(f"\n{request.param.name}: sandbox ready in {process.seconds_to_ready:.2f}s ({process.ready_line})")
    yield process
    process.kill()


@pytest.fixture
def clients(sandbox, monkeypatch) -> Iterator[Clients]:
    """The test process as a user's shell after `source DIR/env`; faults cleared after."""
    for key, value in sandbox.env().items():
        monkeypatch.setenv(key, value)
    for key in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
        monkeypatch.delenv(key, raising=False)
    runbook = load_runbook(sandbox.runbook)
    yield Clients(sandbox, runbook)
    sandbox.cli("fault", "clear")


def _serving(runbook: Runbook) -> list[str]:
    return [n for n, r in runbook.regions.items() if r.role is not Role.standby]


def _desired(runbook: Runbook, region: str, replicas) -> int:
    return replicas.standby if runbook.regions[region].role is Role.standby else replicas.active


# ---------------------------------------------------------------------------- start-up and env
def test_up_is_ready_and_describes_itself(sandbox):
    assert sandbox.seconds_to_ready is not None
    description = sandbox.description()
    runbook = load_runbook(sandbox.runbook)
    assert description["runbook"] == runbook.name
    assert description["speed"] == SPEED
    assert description["pid"] == sandbox.pid
    assert (sandbox.state_dir / "sandbox.pid").read_text().strip() == str(sandbox.pid)
    assert set(description["regions"]) == set(runbook.regions)
    assert description["temporal"]["address"].startswith("127.0.0.1:")
    for url in (description["aws"], description["control"], *(r["model_server"] for r in description["regions"].values())):
        assert url.startswith("http://127.0.0.1:")
    assert sandbox.children(), "the dev server at least runs as a child"
    for pid in sandbox.children():
        assert not process_gone(pid)


def test_env_points_drpilot_settings_at_the_twin(sandbox):
    env = parse_env_file(sandbox.state_dir / "env")
    settings = load_settings(env)
    runbook = load_runbook(sandbox.runbook)
    assert settings.speed == SPEED
    assert settings.temporal.address == sandbox.description()["temporal"]["address"]
    assert set(settings.providers.endpoint_map) == {r.endpoint for r in runbook.regions.values()}
    assert all(url.startswith("http://127.0.0.1:") for url in settings.providers.endpoint_map.values())
    assert env["AWS_ENDPOINT_URL"].startswith("http://127.0.0.1:")
    assert env["AWS_ACCESS_KEY_ID"] and env["AWS_SECRET_ACCESS_KEY"] and env["AWS_DEFAULT_REGION"]
    assert Path(env["KUBECONFIG"]).is_file()
    if runbook.spec.dns.provider.value == "clouddns":
        assert settings.providers.clouddns_endpoint.startswith("http://127.0.0.1:")
    if any(r.prometheus for r in runbook.regions.values()) and sandbox.description()["prometheus"]:
        assert set(settings.providers.prometheus_map) == {r.prometheus for r in runbook.regions.values()}


async def test_temporal_dev_server_answers(sandbox):
    from temporalio.client import Client

    client = await Client.connect(sandbox.env()["DRPILOT_TEMPORAL_ADDRESS"])
    assert await client.service_client.check_health()
    ui = sandbox.description()["temporal"]["ui"]
    assert httpx.get(ui, timeout=5).status_code == 200


def test_status_command(sandbox):
    report = json.loads(sandbox.cli("status", "--json").stdout)
    runbook = load_runbook(sandbox.runbook)
    assert report["weights"] == runbook.normal_weights()
    assert set(report["regions"]) == set(runbook.regions)
    human = sandbox.cli("status").stdout
    for region in runbook.regions:
        assert region in human


# ---------------------------------------------------------------------- reading the twin
def test_dns_holds_the_runbooks_weighted_records(clients):
    runbook = clients.runbook
    assert clients.weights() == runbook.normal_weights()
    if runbook.spec.dns.provider.value == "route53":
        r53 = clients.aws("route53")
        zone = r53.list_hosted_zones_by_name(DNSName=runbook.spec.dns.zone)["HostedZones"][0]
        assert zone["Name"] == runbook.spec.dns.zone
        sets = r53.list_resource_record_sets(HostedZoneId=zone["Id"])["ResourceRecordSets"]
        for record in runbook.spec.dns.records:
            for region, target in record.targets.items():
                match = [s for s in sets if s["Name"] == record.name and s.get("SetIdentifier") == record.set_identifier(region)]
                assert len(match) == 1
                assert match[0]["Type"] == record.type.value and match[0]["TTL"] == record.ttl
                assert match[0]["ResourceRecords"] == [{"Value": target}]
    else:
        zones = {z.name: z for z in clients.clouddns().list_zones()}
        assert runbook.spec.dns.managed_zone in zones
        assert zones[runbook.spec.dns.managed_zone].dns_name == runbook.spec.dns.zone
        for record in runbook.spec.dns.records:
            rrset = clients.wrr_rrset(record.name)
            assert rrset["type"] == record.type.value and int(rrset["ttl"]) == record.ttl
            items = rrset["routingPolicy"]["wrr"]["items"]
            assert sorted(i["rrdatas"][0] for i in items) == sorted(record.targets.values())


def test_s3_holds_the_models_and_the_glacier_archive(clients):
    s3 = clients.aws("s3")
    for model in clients.runbook.spec.models:
        for region, uri in model.artifacts.items():
            if not uri.startswith("s3://"):
                continue  # Cloud Storage's: the next test
            bucket, _, prefix = uri.removeprefix("s3://").partition("/")
            keys = {o["Key"]: o for o in s3.list_objects_v2(Bucket=bucket, Prefix=prefix)["Contents"]}
            manifest = json.loads(s3.get_object(Bucket=bucket, Key=prefix + model.manifest)["Body"].read())
            assert manifest["model"] == model.name and manifest["version"] == model.version, region
            for entry in manifest["files"]:
                assert keys[prefix + entry["path"]]["Size"] == entry["size"], (region, entry)
        if not model.archive.startswith("s3://"):
            continue
        bucket, _, prefix = model.archive.removeprefix("s3://").partition("/")
        archived = s3.list_objects_v2(Bucket=bucket, Prefix=prefix)["Contents"]
        assert {o["StorageClass"] for o in archived if not o["Key"].endswith(model.manifest)} == {"GLACIER"}
        frozen = next(o["Key"] for o in archived if o["StorageClass"] == "GLACIER")
        with pytest.raises(ClientError) as refused:
            s3.get_object(Bucket=bucket, Key=frozen)
        assert refused.value.response["Error"]["Code"] == "InvalidObjectState"


def test_cloud_storage_holds_the_gs_models_and_the_archive_class_archive(clients):
    locations = [(r, u) for m in clients.runbook.spec.models for r, u in [*m.artifacts.items(), ("archive", m.archive or "")]]
    gs = [(r, u) for r, u in locations if u.startswith("gs://")]
    if not gs:
        assert "DRPILOT_GCS_ENDPOINT" not in clients.sandbox.env()  # no emulator for S3-only runbooks
        return
    client = gcs_client(clients.sandbox.env()["DRPILOT_GCS_ENDPOINT"])
    for location, uri in gs:
        bucket, prefix = split_gs_uri(uri)
        blobs = {b.name[len(prefix) :]: b for b in client.list_blobs(bucket, prefix=prefix)}
        manifest = json.loads(blobs.pop("manifest.json").download_as_bytes())
        assert {e["path"]: (e["size"], e["crc32c"]) for e in manifest["files"]} == {
            p: (b.size, b.crc32c) for p, b in blobs.items()
        }
        assert {b.storage_class for b in blobs.values()} == {"ARCHIVE" if location == "archive" else "STANDARD"}


def test_each_region_has_its_cluster_and_workloads(clients):
    runbook = clients.runbook
    for region in runbook.regions:
        apps = clients.apps(region)
        for workload in runbook.workloads_in(region):
            dep = apps.read_namespaced_deployment(workload.deployment, workload.namespace)
            assert dep.spec.replicas == _desired(runbook, region, workload.replicas), region
            assert dep.status.ready_replicas == dep.spec.replicas, region
        kube.CoreV1Api(clients.kube(region)).read_namespace(runbook.spec.workloads[0].namespace)


def test_kubectl_reads_and_scales(clients, sandbox):
    runbook = clients.runbook
    standby = clients.other_region
    workload, before = clients.seeded(standby)
    context = runbook.regions[standby].kube.context
    kubectl = ["kubectl", "--kubeconfig", os.environ["KUBECONFIG"], "--context", context, "-n", workload.namespace]
    listed = subprocess.run([*kubectl, "get", "deploy"], capture_output=True, text=True, timeout=30)
    assert listed.returncode == 0, listed.stderr
    assert workload.deployment in listed.stdout
    try:
        scaled = subprocess.run([*kubectl, "scale", f"deployment/{workload.deployment}", f"--replicas={before + 1}"], capture_output=True, text=True, timeout=30)
        assert scaled.returncode == 0, scaled.stderr
        assert clients.apps(standby).read_namespaced_deployment_scale(workload.deployment, workload.namespace).spec.replicas == before + 1
    finally:
        clients.apps(standby).patch_namespaced_deployment_scale(workload.deployment, workload.namespace, {"spec": {"replicas": before}})


def test_model_servers_stand_at_the_runbook_endpoints(clients):
    for region in clients.runbook.regions:
        base = clients.endpoint(region)
        assert httpx.get(f"{base}/v2/health/live", timeout=5).status_code == 200
        ready = httpx.get(f"{base}/v2/health/ready", timeout=5)
        assert ready.status_code == 200, (region, ready.text)
        warmup = clients.runbook.spec.warmup[0]
        answer = httpx.post(f"{base}{warmup.path}", json=warmup.body, timeout=5)
        assert answer.status_code == 200 and answer.json()["outputs"], region
        assert f'region="{region}"' in httpx.get(f"{base}/metrics", timeout=5).text


# ---------------------------------------------------------------------- changing the twin
def test_a_dns_change_moves_the_traffic(clients):
    runbook = clients.runbook
    normal = runbook.normal_weights()
    target = clients.other_region
    moved = {r: (100 if r == target else 0) for r in runbook.regions}
    before = clients.status()["regions"][target]["traffic"]["sent"]
    try:
        change = clients.set_weights(moved)
        eventually(lambda: clients.change_status(change) in ("INSYNC", "done"), what="change applied")
        assert clients.weights() == moved
        eventually(lambda: clients.status()["weights"] == moved, what="the twin sees the new weights")
        eventually(lambda: clients.status()["regions"][target]["traffic"]["sent"] > before + 5, what="traffic follows DNS")
    finally:
        change = clients.set_weights(normal)
        eventually(lambda: clients.change_status(change) in ("INSYNC", "done"))
    assert clients.weights() == normal


def test_scaling_brings_pods_to_ready(clients):
    other = clients.other_region
    workload, before = clients.seeded(other)
    apps = clients.apps(other)
    try:
        scale = apps.patch_namespaced_deployment_scale(workload.deployment, workload.namespace, {"spec": {"replicas": before + 2}})
        assert scale.kind == "Scale" and scale.spec.replicas == before + 2
        eventually(lambda: apps.read_namespaced_deployment(workload.deployment, workload.namespace).status.ready_replicas == before + 2, what="pods ready")
    finally:
        apps.patch_namespaced_deployment_scale(workload.deployment, workload.namespace, {"spec": {"replicas": before}})


def test_readiness_follows_pods_and_artifacts(clients):
    runbook = clients.runbook
    region = clients.other_region
    base = clients.endpoint(region)
    apps = clients.apps(region)
    workload, before = clients.seeded(region)
    model = runbook.spec.models[0]
    lose, put_back = _weights_file(clients, model.artifacts[region])
    try:
        apps.patch_namespaced_deployment_scale(workload.deployment, workload.namespace, {"spec": {"replicas": 0}})
        eventually(lambda: httpx.get(f"{base}/v2/health/ready", timeout=5).status_code == 503, what="unready without pods")
        apps.patch_namespaced_deployment_scale(workload.deployment, workload.namespace, {"spec": {"replicas": before}})
        eventually(lambda: httpx.get(f"{base}/v2/health/ready", timeout=5).status_code == 200, what="ready with pods again")
        lose()
        eventually(lambda: httpx.get(f"{base}/v2/health/ready", timeout=5).status_code == 503, what="unready without artifacts")
        assert "artifact" in httpx.get(f"{base}/v2/health/ready", timeout=5).json()["reason"]
    finally:
        put_back()
        apps.patch_namespaced_deployment_scale(workload.deployment, workload.namespace, {"spec": {"replicas": before}})
    eventually(lambda: httpx.get(f"{base}/v2/health/ready", timeout=5).status_code == 200, what="ready again")


def _weights_file(clients: Clients, uri: str):
    """(delete it, put it back) for a model copy's weights file, in S3 or Cloud Storage."""
    if uri.startswith("gs://"):
        bucket, prefix = split_gs_uri(uri)
        blob = gcs_client(clients.sandbox.env()["DRPILOT_GCS_ENDPOINT"]).bucket(bucket).blob(prefix + "model.safetensors")
        body = blob.download_as_bytes()
        return blob.delete, lambda: blob.upload_from_string(body)
    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    s3, key = clients.aws("s3"), prefix + "model.safetensors"
    body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    return lambda: s3.delete_object(Bucket=bucket, Key=key), lambda: s3.put_object(Bucket=bucket, Key=key, Body=body)


# -------------------------------------------------------------------------------- faults
def test_fault_region_down(clients):
    region = clients.runbook.primary
    base = clients.endpoint(region)
    clients.fault("set", f"region_down={region}")
    assert httpx.get(f"{base}/v2/health/live", timeout=5).status_code == 503
    with pytest.raises(ApiException) as refused:
        clients.apps(region).list_namespaced_deployment(clients.runbook.spec.workloads[0].namespace)
    assert refused.value.status == 503
    other = [r for r in clients.runbook.regions if r != region][0]
    assert clients.apps(other).list_namespaced_deployment(clients.runbook.workloads_in(other)[0].namespace).items
    clients.fault("clear")
    assert httpx.get(f"{base}/v2/health/live", timeout=5).status_code == 200
    assert clients.apps(region).list_namespaced_deployment(clients.runbook.spec.workloads[0].namespace).items


def test_fault_pods_stalled(clients):
    region = clients.other_region
    workload, before = clients.seeded(region)
    apps = clients.apps(region)
    # Pods there would start in 0.1 s (3 s / speed 30): the wait below proves the stall.
    clients.fault("set", f"pods_stalled={region}", f"pod_start_seconds.{region}=3")
    try:
        apps.patch_namespaced_deployment_scale(workload.deployment, workload.namespace, {"spec": {"replicas": before + 2}})
        time.sleep(1.5)
        status = apps.read_namespaced_deployment(workload.deployment, workload.namespace).status
        assert (status.ready_replicas or 0) <= before
        clients.fault("clear")
        eventually(lambda: apps.read_namespaced_deployment(workload.deployment, workload.namespace).status.ready_replicas == before + 2, what="pods ready once unstalled")
    finally:
        apps.patch_namespaced_deployment_scale(workload.deployment, workload.namespace, {"spec": {"replicas": before}})


def test_fault_glacier_restore_delay(clients):
    model = clients.runbook.spec.models[0]
    if model.archive.startswith("gs://"):
        # Cloud Storage's Archive class is read at once (its retrieval is billed, not delayed).
        clients.fault("set", "glacier_delay_seconds=60")
        bucket, prefix = split_gs_uri(model.archive)
        blob = gcs_client(clients.sandbox.env()["DRPILOT_GCS_ENDPOINT"]).bucket(bucket).get_blob(prefix + "config.json")
        assert blob.storage_class == "ARCHIVE"
        assert json.loads(blob.download_as_bytes())["model"] == model.name
        return
    bucket, _, prefix = model.archive.removeprefix("s3://").partition("/")
    key = prefix + "config.json"
    s3 = clients.aws("s3")
    clients.fault("set", "glacier_delay_seconds=60")  # 2 s at speed 30
    s3.restore_object(Bucket=bucket, Key=key, RestoreRequest={"Days": 1, "GlacierJobParameters": {"Tier": "Expedited"}})
    assert 'ongoing-request="true"' in s3.head_object(Bucket=bucket, Key=key)["Restore"]
    with pytest.raises(ClientError) as refused:
        s3.get_object(Bucket=bucket, Key=key)
    assert refused.value.response["Error"]["Code"] == "InvalidObjectState"
    eventually(lambda: 'ongoing-request="false"' in s3.head_object(Bucket=bucket, Key=key)["Restore"], timeout=20, what="restore done")
    assert json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())["model"] == model.name


def _answered(base: str, region: str) -> tuple[int, int]:
    """(all, 5xx) inference requests the region's model server has answered, from /metrics."""
    total = errors = 0
    for line in httpx.get(f"{base}/metrics", timeout=5).text.splitlines():
        if line.startswith("inference_requests_total{") and f'region="{region}"' in line:
            n = int(float(line.rsplit(" ", 1)[1]))
            total += n
            errors += n if 'code="5' in line else 0
    return total, errors


def test_fault_error_ramp_at_a_weight(clients):
    runbook = clients.runbook
    region = runbook.primary
    weight = runbook.normal_weights()[region]
    base = clients.endpoint(region)
    warmup = runbook.spec.warmup[0]
    clients.fault("set", f"error_ramp.{region}={weight}:0.5")
    time.sleep(0.6)  # the model server's view of the weight is cached briefly
    total0, errors0 = _answered(base, region)
    for _ in range(20):
        httpx.post(f"{base}{warmup.path}", json=warmup.body, timeout=5)
    time.sleep(0.2)  # let the traffic generator's requests in flight finish
    total1, errors1 = _answered(base, region)
    # The generated traffic shares the ramp: half of everything answered in the window fails.
    assert total1 - total0 >= 20
    assert abs((errors1 - errors0) - (total1 - total0) / 2) <= 2, (total1 - total0, errors1 - errors0)
    clients.fault("set", f"error_ramp.{region}={weight + 1}:0.5")  # above its weight: no errors
    codes = [httpx.post(f"{base}{warmup.path}", json=warmup.body, timeout=5).status_code for _ in range(10)]
    assert set(codes) == {200}


def test_fault_dns_change_pending(clients):
    runbook = clients.runbook
    key = "route53_pending_seconds" if runbook.spec.dns.provider.value == "route53" else "clouddns_pending_seconds"
    clients.fault("set", f"{key}=150")  # 5 s at speed 30
    normal = runbook.normal_weights()
    submitted = time.monotonic()
    change = clients.set_weights(normal)
    status = clients.change_status(change)
    # Ordered, not raced: an answer read before the pending time was up must be PENDING; on a
    # machine slow enough to read it later, INSYNC is right too.
    assert status in ("PENDING", "pending") or time.monotonic() - submitted >= 150 / SPEED, status
    eventually(lambda: clients.change_status(change) in ("INSYNC", "done"), timeout=60, what="applied after the pending time")
    # --speed divides the simulated time: applied well before the unscaled 150 s.
    assert time.monotonic() - submitted < 150


def test_fault_route53_throttling(clients):
    if clients.runbook.spec.dns.provider.value != "route53":
        pytest.skip("Route53 only")
    clients.fault("set", "route53_throttle_count=2")
    r53 = clients.aws("route53", retries={"total_max_attempts": 1, "mode": "standard"})
    for _ in range(2):
        with pytest.raises(ClientError) as throttled:
            r53.list_hosted_zones()
        assert throttled.value.response["Error"]["Code"] == "Throttling"
    assert r53.list_hosted_zones()["HostedZones"]


def test_fault_velero_partially_failed(clients):
    velero = clients.runbook.spec.backups.velero
    if velero is None:
        pytest.skip("the runbook has no Velero backups")
    region = clients.other_region
    clients.fault("set", f"velero_partially_failed={region}")
    custom = kube.CustomObjectsApi(clients.kube(region))
    name = f"twin-test-{int(time.time() * 1000)}"
    body = {
        "apiVersion": "velero.io/v1", "kind": "Restore", "metadata": {"name": name, "namespace": velero.namespace},
        "spec": {"backupName": velero.backup, "includedNamespaces": velero.namespaces},
    }
    custom.create_namespaced_custom_object("velero.io", "v1", velero.namespace, "restores", body)
    final = eventually(
        lambda: (custom.get_namespaced_custom_object("velero.io", "v1", velero.namespace, "restores", name).get("status") or {}).get("phase")
        in ("Completed", "PartiallyFailed", "Failed") and custom.get_namespaced_custom_object("velero.io", "v1", velero.namespace, "restores", name),
        timeout=30, what="restore finished",
    )
    assert final["status"]["phase"] == "PartiallyFailed"
    assert final["status"].get("errors", 0) > 0


def test_fault_set_rejects_unknown_regions_and_fields(sandbox):
    bad = sandbox.cli("fault", "set", "region_down=mars-1", check=False)
    assert bad.returncode == 1 and "unknown region(s) mars-1" in bad.stderr
    typo = sandbox.cli("fault", "set", "regoin_down=x", check=False)
    assert typo.returncode == 1 and "unknown fault 'regoin_down'" in typo.stderr
    assert sandbox.cli("fault", "show").stdout.strip() == "no faults"


# -------------------------------------------------------------------------------- shutdown
def test_zz_down_stops_everything(sandbox):
    children = sandbox.children()
    assert children and processes_mentioning(sandbox.state_dir)
    result = sandbox.cli("down")
    assert "stopped" in result.stdout
    assert sandbox.wait(timeout=5) == 0
    assert wait_gone([sandbox.pid, *children]) == []
    assert processes_mentioning(sandbox.state_dir) == []
    assert not (sandbox.state_dir / "sandbox.pid").exists()
    again = sandbox.cli("down")
    assert "no sandbox running" in again.stdout


# ----------------------------------------------------------- process lifecycle, one runbook
def test_in_process_stop_leaves_no_thread_and_no_file(twin_factory):
    # Here, not with the in-process tests: their module-scoped twins' threads come and go.
    before = {t.ident for t in threading.enumerate()}
    twin = twin_factory(CLOUDDNS_RUNBOOK)
    urls = [twin.aws_url, twin.control_url, twin.clouddns_url, *(ms.url for ms in twin.model_servers.values())]
    twin.stop()
    twin.stop()  # idempotent
    deadline = time.monotonic() + 5
    while {t.ident for t in threading.enumerate()} - before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [t.name for t in threading.enumerate() if t.ident not in before] == []
    assert not (twin.state_dir / "sandbox.json").exists()
    for url in urls:
        with pytest.raises(httpx.ConnectError):
            httpx.get(url, timeout=1)


def test_sigterm_on_up_stops_everything(sandbox_process):
    sandbox = sandbox_process(ROUTE53_RUNBOOK)
    children = sandbox.children()
    sandbox.signal(signal.SIGTERM)
    assert sandbox.wait(timeout=30) == 0
    assert wait_gone(children) == []
    assert processes_mentioning(sandbox.state_dir) == []
    assert not (sandbox.state_dir / "sandbox.pid").exists()


def test_kill_9_on_up_still_leaves_no_child(sandbox_process):
    # Children die with their parent (PR_SET_PDEATHSIG); `down` then tidies the pid file.
    sandbox = sandbox_process(ROUTE53_RUNBOOK)
    children = sandbox.children()
    assert children
    sandbox.signal(signal.SIGKILL)
    sandbox.wait(timeout=10)
    assert wait_gone(children) == []
    assert processes_mentioning(sandbox.state_dir) == []
    assert "no sandbox running" in sandbox.cli("down").stdout
    assert not (sandbox.state_dir / "sandbox.pid").exists()


def test_sigterm_while_starting_leaves_nothing(tmp_path):
    proc = subprocess.Popen(
        [str(DRPILOT), "sandbox", "up", "--runbook", str(CLOUDDNS_RUNBOOK), "--state-dir", str(tmp_path / "early")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
    )
    # Wait until it has started children (the dev server's database path appears), then stop it.
    eventually(lambda: processes_mentioning(tmp_path / "early") and len(processes_mentioning(tmp_path / "early")) > 1, timeout=30)
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=30)
    assert wait_gone(processes_mentioning(tmp_path / "early")) == []


def test_up_options_faults_at_start_and_a_second_up_refused(sandbox_process):
    sandbox = sandbox_process(
        ROUTE53_RUNBOOK, "--no-temporal", "--no-observability", "--speed", "60",
        "--fault", "pods_stalled=us-west-2", "--fault", "glacier_delay_seconds=5",
    )
    assert sandbox.description()["temporal"] is None and sandbox.children() == []
    env = sandbox.env()
    assert "DRPILOT_TEMPORAL_ADDRESS" not in env and env["DRPILOT_SPEED"] == "60"
    shown = sandbox.cli("fault", "show").stdout
    assert 'pods_stalled = ["us-west-2"]' in shown and "glacier_delay_seconds = 5.0" in shown
    second = subprocess.run(
        [str(DRPILOT), "sandbox", "up", "--runbook", str(ROUTE53_RUNBOOK), "--state-dir", str(sandbox.state_dir)],
        capture_output=True, text=True, timeout=30, cwd=ROOT,
    )
    assert second.returncode == 1
    assert f"already running from {sandbox.state_dir}" in second.stderr
    assert sandbox.proc.poll() is None, "the first one keeps running"


def test_bad_runbook_is_reported_without_a_traceback(tmp_path):
    broken = tmp_path / "broken.yaml"
    broken.write_text(ROUTE53_RUNBOOK.read_text().replace("role: standby", "role: spare"))
    result = subprocess.run([str(DRPILOT), "sandbox", "up", "--runbook", str(broken), "--state-dir", str(tmp_path / "s")], capture_output=True, text=True, timeout=30)
    assert result.returncode == 1
    assert f"{broken}:" in result.stderr and "role" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "s").exists()


def test_a_bad_fault_at_start_is_refused_before_anything_starts(tmp_path):
    state = tmp_path / "s"
    result = subprocess.run(
        [str(DRPILOT), "sandbox", "up", "--runbook", str(ROUTE53_RUNBOOK), "--state-dir", str(state), "--fault", "region_down=mars-1"],
        capture_output=True, text=True, timeout=30,
    )
    assert result.returncode == 1
    assert "--fault: region_down: unknown region(s) mars-1" in result.stderr
    assert not state.exists()

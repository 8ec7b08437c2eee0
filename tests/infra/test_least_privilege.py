"""Least privilege, checked: every provider call the activities make in a failover, a
failback and a drill's evidence write against the twin is recorded where it leaves the SDK (botocore `before-parameter-build`
events, the kubernetes REST client's requests, the Cloud DNS connection's paths) or where
the twin's Cloud Storage front receives it, and held against infra/aws/iam-policy.json (with
infra/aws/iam-policy-routing-controls.json for a runbook switched by Route 53 ARC routing
controls), the DR-cluster Roles, infra/gcp/dns-role.yaml and infra/gcp/storage-role.yaml: no
call a policy denies, no permission that no call needs."""

from __future__ import annotations

import fnmatch
import json
import re
from collections.abc import Iterator
from typing import Any

import boto3
import botocore.client
import pytest
import yaml
from drpilot_twin.faults import Faults
from drpilot_twin.gcs import StorageCall
from drpilot_twin.kube.api import seed_kube_from_runbook
from google.cloud import _http as google_http
from kubernetes.client import rest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.artifacts.activities import ArtifactActivities
from activities.blocks.aurora import AuroraActivities
from activities.blocks.jobs import JobActivities
from activities.contracts import (
    ArtifactInput,
    AuroraReadInput,
    AuroraSwitchInput,
    CapacityInput,
    DnsApplyInput,
    DnsReadInput,
    EvidenceInput,
    ImagesInput,
    JobPreflightInput,
    JobRunInput,
    KubeReadInput,
    LastDrillInput,
    QuotaInput,
    RestoreInput,
    ScaleInput,
    SyncInput,
    VeleroRestoreInput,
)
from activities.dns.activities import DnsActivities
from activities.drills import DrillActivities
from activities.kube.activities import KubeActivities
from activities.standby import StandbyActivities
from activities.velero import VeleroActivities
from drpilot.domain.runbook import Runbook
from drpilot.domain.settings import load_settings
from tests.support.paths import ARC_RUNBOOK, CLOUDDNS_RUNBOOK, ROOT, ROUTE53_RUNBOOK
from tests.support.twin import start_twin

IAM = ROOT / "infra/aws/iam-policy.json"
IAM_ROUTING_CONTROLS = ROOT / "infra/aws/iam-policy-routing-controls.json"
GCP_ROLE = ROOT / "infra/gcp/dns-role.yaml"
GCS_ROLE = ROOT / "infra/gcp/storage-role.yaml"
RBAC = sorted((ROOT / "infra/kubernetes/dr-cluster").glob("*-role.yaml"))  # Roles and ClusterRoles

# botocore operation -> the IAM actions it needs and on what (bucket, key-or-None).
S3_ACTIONS = {
    "HeadObject": ["s3:GetObject"],
    "GetObject": ["s3:GetObject"],
    "PutObject": ["s3:PutObject"],
    "CreateMultipartUpload": ["s3:PutObject"],
    "UploadPart": ["s3:PutObject"],
    "CompleteMultipartUpload": ["s3:PutObject"],
    "RestoreObject": ["s3:RestoreObject"],
    "ListObjectsV2": ["s3:ListBucket"],
    "GetObjectAttributes": ["s3:GetObjectAttributes"],
}


# ----------------------------------------------------------------------------- recording
class Calls:
    def __init__(self) -> None:
        self.aws: set[tuple[str, str]] = set()  # (IAM action, resource ARN)
        self.kube: set[tuple[str, str, str, str]] = set()  # (namespace, group, resource, verb)
        self.gcp: set[str] = set()  # permissions


def aws_needs(operation: str, params: dict[str, Any]) -> list[tuple[str, str]]:
    # The region is the client's, not a parameter: "*" stands for it (and for an account not given).
    if operation == "DescribeImages":
        return [("ecr:DescribeImages", f"arn:aws:ecr:*:{params.get('registryId', '*')}:repository/{params['repositoryName']}")]
    if operation == "GetServiceQuota":
        return [("servicequotas:GetServiceQuota", f"arn:aws:servicequotas:*:*:{params['ServiceCode']}/{params['QuotaCode']}")]
    if operation in ("ListHostedZonesByName", "ListRoutingControls"):  # IAM has no resource for them
        return [(f"{'route53-recovery-cluster' if 'Routing' in operation else 'route53'}:{operation}", "*")]
    if operation == "GetRoutingControlState":
        return [(f"route53-recovery-cluster:{operation}", params["RoutingControlArn"])]
    if operation == "UpdateRoutingControlStates":
        return [(f"route53-recovery-cluster:{operation}", e["RoutingControlArn"]) for e in params["UpdateRoutingControlStateEntries"]]
    if operation == "DescribeGlobalClusters":  # global clusters' ARNs name no region
        return [("rds:DescribeGlobalClusters", f"arn:aws:rds::*:global-cluster:{params['GlobalClusterIdentifier']}")]
    if operation == "DescribeDBClusters":  # the activities name members by ARN
        return [("rds:DescribeDBClusters", params["DBClusterIdentifier"])]
    if operation in ("SwitchoverGlobalCluster", "FailoverGlobalCluster"):
        return [(f"rds:{operation}", f"arn:aws:rds::*:global-cluster:{params['GlobalClusterIdentifier']}"),
                (f"rds:{operation}", params["TargetDbClusterIdentifier"])]
    if operation == "GetMetricData":  # CloudWatch has no resource for it
        return [("cloudwatch:GetMetricData", "*")]
    if operation == "GetChange":
        return [(f"route53:{operation}", f"arn:aws:route53:::change/{params['Id'].rsplit('/', 1)[-1]}")]
    if operation in {"ListResourceRecordSets", "ChangeResourceRecordSets"}:
        zone = params["HostedZoneId"].rsplit("/", 1)[-1]
        return [(f"route53:{operation}", f"arn:aws:route53:::hostedzone/{zone}")]
    if operation == "CopyObject":
        source = params["CopySource"]
        src = f"{source['Bucket']}/{source['Key']}" if isinstance(source, dict) else source.split("?")[0]
        return [("s3:GetObject", f"arn:aws:s3:::{src}"), ("s3:PutObject", f"arn:aws:s3:::{params['Bucket']}/{params['Key']}")]
    if operation == "UploadPartCopy":
        return aws_needs("CopyObject", params)
    if operation in S3_ACTIONS:
        where = f"{params['Bucket']}/{params['Key']}" if "Key" in params else params["Bucket"]
        return [(action, f"arn:aws:s3:::{where}") for action in S3_ACTIONS[operation]]
    pytest.fail(f"botocore operation {operation} has no IAM mapping here: add it (and to the policy if needed)")


KUBE_PATH = re.compile(
    r"^/(?:api/v1|apis/(?P<group>[^/]+)/[^/]+)(?:/namespaces/(?P<ns>[^/]+))?/(?P<resource>[^/]+)(?:/(?P<name>[^/]+)(?:/(?P<sub>[^/]+))?)?$"
)
KUBE_VERBS = {"GET": "get", "POST": "create", "PATCH": "patch", "PUT": "update", "DELETE": "delete"}


def kube_needs(method: str, url: str) -> tuple[str, str, str, str]:
    path = url.split("://", 1)[-1].split("/", 1)[-1].split("?")[0]
    m = KUBE_PATH.match("/" + path)
    assert m, f"kubernetes request {method} {url}: not a resource path"
    resource = m["resource"] + (f"/{m['sub']}" if m["sub"] else "")
    verb = "list" if method == "GET" and not m["name"] else KUBE_VERBS[method]
    return (m["ns"] or "", m["group"] or "", resource, verb)  # "": cluster-scoped (a ClusterRole)


def gcp_needs(method: str, path: str, data: Any) -> list[str]:
    if path.endswith("/rrsets") and method == "GET":
        return ["dns.resourceRecordSets.list"]
    if path.endswith("/changes") and method == "GET":
        return ["dns.changes.list"]
    if "/changes/" in path and method == "GET":
        return ["dns.changes.get"]
    if path.endswith("/changes") and method == "POST":
        # Cloud DNS IAM: a change needs changes.create, plus create for its additions and
        # delete for its deletions on the record sets.
        needs = ["dns.changes.create"]
        needs += ["dns.resourceRecordSets.create"] if (data or {}).get("additions") else []
        needs += ["dns.resourceRecordSets.delete"] if (data or {}).get("deletions") else []
        return needs
    if re.search(r"/managedZones/[^/]+$", path) and method == "GET":
        return ["dns.managedZones.get"]
    pytest.fail(f"Cloud DNS {method} {path} has no permission mapping here: add it")


def gcs_needs(call: StorageCall) -> list[str]:
    """Cloud Storage IAM permissions of one JSON API request (Cloud Storage docs, "IAM
    permissions for JSON methods")."""
    parts = call.path.split("/")  # "", "b", BUCKET, "o"[, OBJECT[, ...]]
    replacing = ["storage.objects.delete"] if call.replaced else []
    if call.method == "POST" and "rewriteTo" in parts:
        return ["storage.objects.get", "storage.objects.create", *replacing]
    if call.method == "POST" and len(parts) == 4:  # an upload
        return ["storage.objects.create", *replacing]
    if call.method == "GET" and len(parts) == 4:
        return ["storage.objects.list"]
    if call.method == "GET" and len(parts) == 5:
        return ["storage.objects.get"]
    pytest.fail(f"Cloud Storage {call.method} {call.path} has no permission mapping here: add it")


@pytest.fixture
def calls(monkeypatch) -> Iterator[Calls]:
    recorded = Calls()
    create_client = botocore.client.ClientCreator.create_client

    def creating(self, *args, **kwargs):
        client = create_client(self, *args, **kwargs)

        # Fired for every call with the operation and its API parameters, before anything
        # is sent (before-call sees the serialised request instead).
        def before_parameter_build(model, params, **_):
            recorded.aws.update(aws_needs(model.name, params))

        client.meta.events.register("before-parameter-build", before_parameter_build)
        return client

    monkeypatch.setattr(botocore.client.ClientCreator, "create_client", creating)
    request = rest.RESTClientObject.request

    def kube_request(self, method, url, *args, **kwargs):
        recorded.kube.add(kube_needs(method, url))
        return request(self, method, url, *args, **kwargs)

    monkeypatch.setattr(rest.RESTClientObject, "request", kube_request)
    api_request = google_http.JSONConnection.api_request

    def gcp_request(self, method, path, *args, data=None, **kwargs):
        if "/dns/" in (self.API_BASE_URL + self.build_api_url(path)):  # Cloud Storage's: the front records them
            recorded.gcp.update(gcp_needs(method, path, data))
        return api_request(self, method, path, *args, data=data, **kwargs)

    monkeypatch.setattr(google_http.JSONConnection, "api_request", gcp_request)
    yield recorded


# ------------------------------------------------------------------------------ policies
def iam_allows(policy: dict, zone: str) -> list[tuple[str, str, str]]:
    """(statement id, action, resource pattern) for every Allow, ZONE_ID replaced."""
    out = []
    for st in policy["Statement"]:
        assert st["Effect"] == "Allow"
        actions = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
        resources = st["Resource"] if isinstance(st["Resource"], list) else [st["Resource"]]
        out += [(st["Sid"], a, r.replace("ZONE_ID", zone)) for a in actions for r in resources]
    return out


def rbac_rules() -> set[tuple[str, str, str, str]]:
    rules = set()
    for path in RBAC:
        for doc in yaml.safe_load_all(path.read_text()):
            if doc["kind"] not in ("Role", "ClusterRole"):
                continue
            namespace = doc["metadata"].get("namespace", "") if doc["kind"] == "Role" else ""
            for rule in doc["rules"]:
                for g in rule["apiGroups"]:
                    for r in rule["resources"]:
                        for v in rule["verbs"]:
                            rules.add((namespace, g, r, v))
    return rules


def check_aws(needed: set[tuple[str, str]], policy: dict, zone: str) -> list[str]:
    allows = iam_allows(policy, zone)
    problems = [
        f"denied: {action} on {resource}"
        for action, resource in sorted(needed)
        if not any(a == action and fnmatch.fnmatchcase(resource, r) for _, a, r in allows)
    ]
    problems += [
        f"unused: {sid} grants {a} on {r}"
        for sid, a, r in allows
        if not any(action == a and fnmatch.fnmatchcase(resource, r) for action, resource in needed)
    ]
    return problems


def check_sets(needed: set, granted: set, what: str) -> list[str]:
    return [f"{what} denied: {n}" for n in sorted(needed - granted)] + [
        f"{what} unused: {g}" for g in sorted(granted - needed)
    ]


# ------------------------------------------------------------------------------ scenarios
def run(env: ActivityEnvironment, fn, input) -> Any:
    try:
        return env.run(fn, input)
    except ApplicationError as exc:
        return exc


def exercise(twin, monkeypatch) -> None:
    """What a failover then a failback do, activity by activity, against the twin."""
    for key, value in twin.env().items():
        monkeypatch.setenv(key, value)
    settings = load_settings()
    rb = twin.runbook
    env = ActivityEnvironment()
    serving, standby = list(rb.regions)[:2]
    dns = DnsActivities.from_settings(settings)
    run(env, dns.read, DnsReadInput(runbook=rb))
    run(env, dns.apply, DnsApplyInput(runbook=rb, weights={serving: 0, standby: 100}, speed=twin.speed))
    run(env, dns.apply, DnsApplyInput(runbook=rb, weights={serving: 100, standby: 0}, speed=twin.speed))
    # A retry that finds the records in place (a crash before the heartbeat) waits for them.
    run(env, dns.apply, DnsApplyInput(runbook=rb, weights={serving: 100, standby: 0}, speed=twin.speed))
    if rb.spec.dns.provider != "route53":
        return
    kube = KubeActivities.from_settings(settings)
    run(env, kube.read, KubeReadInput(runbook=rb, region=standby))
    capacity = run(env, kube.capacity, CapacityInput(runbook=rb, region=standby))
    standby_checks = StandbyActivities.from_settings(settings)
    run(env, standby_checks.images, ImagesInput(runbook=rb, region=standby))
    # What a scale-out that starts a node asks of the quota (the standby fits now: none).
    starting = capacity.model_copy(update={"scale_out": {"g5.12xlarge": [1, 48], "p4d.24xlarge": [1, 96]}})
    run(env, standby_checks.quota, QuotaInput(runbook=rb, region=standby, capacity=starting))
    run(env, kube.scale, ScaleInput(runbook=rb, region=standby, to="active", speed=twin.speed))
    # A wait that runs out lists the pods to say why (the stalled region never gets ready).
    run(env, kube.scale, ScaleInput(runbook=rb, region=serving, to="exact", counts={"ml-serving/inference-service": 9}, timeout_seconds=0.05, speed=twin.speed))
    velero = VeleroActivities.from_settings(settings)
    run(env, velero.restore, VeleroRestoreInput(runbook=rb, region=standby, restore_name="drpilot-lp-1", speed=twin.speed))
    artifacts = ArtifactActivities.from_settings(settings)
    for model in rb.spec.models:
        run(env, artifacts.verify, ArtifactInput(runbook=rb, region=standby, model=model.name, version=model.version))
        run(env, artifacts.restore_from_archive, RestoreInput(runbook=rb, region=standby, model=model.name, version=model.version, speed=twin.speed))
        run(env, artifacts.sync, SyncInput(runbook=rb, model=model.name, version=model.version, source_region=standby, target_region=serving))
    # A drill's evidence pack (the drill's failover and failback are the calls above).
    drills = DrillActivities.from_settings(settings)
    run(env, drills.write_evidence, EvidenceInput(runbook=rb, name=f"{rb.name}/lp-drill.json", body="{}"))
    # Readiness with spec.drills.cadence reads the packs back (drill.last_completed).
    run(env, drills.last_completed, LastDrillInput(runbook=rb))
    exercise_blocks(twin, settings, env, serving, standby)


AURORA_MEMBERS = {
    "us-east-1": "arn:aws:rds:us-east-1:123456789012:cluster:mlflow-use1",
    "us-west-2": "arn:aws:rds:us-west-2:123456789012:cluster:mlflow-usw2",
}
DRAIN_JOB = {"apiVersion": "batch/v1", "kind": "Job", "spec": {"backoffLimit": 0, "template": {"spec": {
    "restartPolicy": "Never", "containers": [{"name": "drain", "image": "registry.example.com/ops/drain:1"}]}}}}


WRITERS = {"namespace": "ingest", "deployment": "queue-writer", "replicas": 0}  # runbooks/llm-platform.yaml's
AURORA_SPEED = 600.0  # how long a switchover takes is not what these tests check


def exercise_blocks(twin, settings, env: ActivityEnvironment, serving: str, standby: str) -> None:
    """The data-tier blocks: the registry database (seeded_world) switched over and failed back
    with data loss allowed; a Job drained in the region left."""
    aurora = AuroraActivities.from_settings(settings)
    database = {"block": "registry-db", "global_cluster": "mlflow-global", "members": AURORA_MEMBERS}
    run(env, aurora.aurora_read, AuroraReadInput(**database, target=standby))
    run(env, aurora.aurora_switch, AuroraSwitchInput(**database, source=serving, target=standby, speed=AURORA_SPEED))
    run(env, aurora.aurora_switch, AuroraSwitchInput(**database, source=standby, target=serving, mode="ungraceful",
                                                     speed=AURORA_SPEED))
    jobs = JobActivities.from_settings(settings)
    job = {"run_id": "lp-run", "block": "drain-consumers", "region": serving, "context": twin.runbook.regions[serving].kube.context,
           "namespace": "ml-serving", "manifest": DRAIN_JOB}
    run(env, jobs.job_preflight, JobPreflightInput(**job))
    run(env, jobs.job_run, JobRunInput(**job, speed=twin.speed))
    # A scale block's Deployments (outside spec.workloads): read in preflight, scaled to exact counts.
    rb = twin.runbook
    scaled = Runbook.model_validate({**rb.model_dump(mode="json"), "spec": {**rb.model_dump(mode="json")["spec"], "blocks": [
        {"name": "stop-writers", "kind": "scale", "at": "deactivate", "region": "{source}", "workloads": [WRITERS]}]}})
    seed_kube_from_runbook(twin.clusters[serving], scaled, serving)  # the twin's own seeding: not a recorded call
    kube = KubeActivities.from_settings(settings)
    key = f"{WRITERS['namespace']}/{WRITERS['deployment']}"
    run(env, kube.read, KubeReadInput(runbook=rb, region=serving, workloads=[key]))
    run(env, kube.scale, ScaleInput(runbook=rb, region=serving, to="exact", counts={key: 0}, speed=twin.speed))


@pytest.fixture
def route53_world(tmp_path):
    yield from seeded_world(ROUTE53_RUNBOOK, tmp_path)


@pytest.fixture
def arc_world(tmp_path):
    yield from seeded_world(ARC_RUNBOOK, tmp_path)


def seeded_world(runbook, tmp_path):
    twin = start_twin(runbook, tmp_path / "twin", faults=Faults(pods_stalled=frozenset({"us-east-1"})))
    # The registry database an aurora_global block names (these runbooks have none to seed it).
    twin.aws.aurora.speed = AURORA_SPEED
    twin.aws.aurora.seed(lambda region: boto3.client("rds", endpoint_url=twin.moto.url, region_name=region,
                                                     aws_access_key_id="sandbox", aws_secret_access_key="sandbox"),
                         "mlflow-global", AURORA_MEMBERS, "us-east-1")
    # The standby region lost its copy of the first model (the archive restore brings it
    # back), the serving region its copy of the second (the failback's sync copies it home).
    env = twin.env()
    s3 = boto3.client(
        "s3", endpoint_url=env["AWS_ENDPOINT_URL"], region_name="us-east-1",
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"], aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
    )
    models = twin.runbook.spec.models
    for model, region in ((models[0], "us-west-2"), (models[1], "us-east-1")):
        bucket, _, prefix = model.artifacts[region].removeprefix("s3://").partition("/")
        for obj in s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", []):
            s3.delete_object(Bucket=bucket, Key=obj["Key"])
    yield twin
    twin.stop()


def zone_of(calls: Calls) -> str:
    zones = {r.rsplit("/", 1)[-1] for a, r in calls.aws if a == "route53:ChangeResourceRecordSets"}
    assert len(zones) == 1, zones
    return zones.pop()


def test_aws_policy_and_rbac_allow_exactly_the_calls_of_a_failover_and_failback(route53_world, calls, monkeypatch):
    exercise(route53_world, monkeypatch)
    zone = zone_of(calls)
    problems = check_aws(calls.aws, json.loads(IAM.read_text()), zone)
    problems += check_sets(calls.kube, rbac_rules(), "RBAC")
    assert problems == [], "\n".join(problems)


def test_routing_controls_policy_allows_exactly_what_the_switch_needs(arc_world, calls, monkeypatch):
    exercise(arc_world, monkeypatch)
    rb, dns = arc_world.runbook, DnsActivities.from_settings(load_settings())
    # The emergency path (controls only), and readiness's listing.
    run(ActivityEnvironment(), dns.apply, DnsApplyInput(runbook=rb, weights={"us-east-1": 0, "us-west-2": 100}, known_good=True))
    run(ActivityEnvironment(), dns.routing_controls_ready, DnsReadInput(runbook=rb))
    policy = json.loads(IAM.read_text())
    for statement in policy["Statement"]:  # the example's repositories, as this runbook's (README: replace them)
        if statement.get("Sid") == "StandbyImages":
            statement["Resource"] = statement["Resource"].replace("repository/llm-inference/", f"repository/{rb.name}/")
    policy["Statement"] += json.loads(IAM_ROUTING_CONTROLS.read_text())["Statement"]
    problems = check_aws(calls.aws, policy, zone_of(calls))
    assert problems == [], "\n".join(problems)


@pytest.fixture
def clouddns_world(tmp_path):
    twin = start_twin(CLOUDDNS_RUNBOOK, tmp_path / "twin")
    yield twin
    twin.stop()


def test_gcp_role_allows_exactly_the_cloud_dns_calls(clouddns_world, calls, monkeypatch):
    exercise(clouddns_world, monkeypatch)
    granted = set(yaml.safe_load(GCP_ROLE.read_text())["includedPermissions"])
    problems = check_sets(calls.gcp, granted, "Cloud DNS")
    assert problems == [], "\n".join(problems)


@pytest.fixture
def gcs_world(tmp_path):
    # The standby lost its weights (the restore rewrites them from the Archive-class bucket),
    # the serving region holds a corrupt copy (the sync replaces it).
    twin = start_twin(
        CLOUDDNS_RUNBOOK, tmp_path / "twin",
        faults=Faults(gcs_object_missing=frozenset({"europe-west4:llama-8b-instruct"}),
                      gcs_corrupt=frozenset({"us-central1:llama-8b-instruct"})),
    )
    yield twin
    twin.stop()


def test_gcp_storage_role_allows_exactly_the_artifact_calls(gcs_world, monkeypatch):
    for key, value in gcs_world.env().items():
        monkeypatch.setenv(key, value)
    rb, env = gcs_world.runbook, ActivityEnvironment()
    serving, standby = "us-central1", "europe-west4"
    artifacts = ArtifactActivities.from_settings(load_settings())
    gcs_world.gcs.forget()
    for model in rb.spec.models:
        run(env, artifacts.verify, ArtifactInput(runbook=rb, region=standby, model=model.name, version=model.version))
        run(env, artifacts.restore_from_archive, RestoreInput(runbook=rb, region=standby, model=model.name, version=model.version, speed=gcs_world.speed))
        run(env, artifacts.sync, SyncInput(runbook=rb, model=model.name, version=model.version, source_region=standby, target_region=serving))
    calls = gcs_world.gcs.calls()
    assert any(c.replaced for c in calls), "the scenario must replace an object (the corrupt copy)"
    needed = {permission for call in calls for permission in gcs_needs(call)}
    granted = set(yaml.safe_load(GCS_ROLE.read_text())["includedPermissions"])
    problems = check_sets(needed, granted, "Cloud Storage")
    assert problems == [], "\n".join(problems)

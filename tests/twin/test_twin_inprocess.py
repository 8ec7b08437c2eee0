"""The twin in-process (threads, no `up`): what the integration tests build on."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import httpx
import pytest
from drpilot_twin.control import FaultError
from drpilot_twin.faults import Faults
from drpilot_twin.processes import alertmanager_binary, prometheus_binary

from drpilot.domain.settings import load_settings
from tests.support.paths import CLOUDDNS_RUNBOOK, ROUTE53_RUNBOOK
from tests.support.twin import FAST_SPEED, eventually, parse_env_file


def test_files_hold_what_env_and_description_say(example_twin):
    assert parse_env_file(example_twin.state_dir / "env") == example_twin.env()
    described = json.loads((example_twin.state_dir / "sandbox.json").read_text())
    assert described == json.loads(json.dumps(example_twin.description()))
    settings = load_settings(example_twin.env())
    assert settings.speed == FAST_SPEED
    assert set(settings.providers.endpoint_map.values()) == {ms.url for ms in example_twin.model_servers.values()}


def test_status_shows_weights_replicas_and_traffic(example_twin):
    runbook = example_twin.runbook
    status = example_twin.status()
    assert status["weights"] == runbook.normal_weights()
    for name, region in status["regions"].items():
        assert region["ready"], (name, region["reason"])
        for workload in runbook.workloads_in(name):
            replicas = region["deployments"][f"{workload.namespace}/{workload.deployment}"]
            assert replicas["ready"] == replicas["replicas"] > 0
    primary = status["regions"][runbook.primary]["traffic"]
    deadline = time.monotonic() + 5
    while primary["sent"] == 0 and time.monotonic() < deadline:
        time.sleep(0.1)
        primary = example_twin.status()["regions"][runbook.primary]["traffic"]
    assert primary["sent"] > 0


def test_region_down_shows_in_readiness_and_status(route53_twin):
    region = route53_twin.runbook.primary
    route53_twin.board.update(region_down=[region])
    try:
        ready, reason = route53_twin.model_servers[region].ready()
        assert not ready and "down" in reason
        assert route53_twin.status()["regions"][region]["down"] is True
        assert httpx.get(f"{route53_twin.model_servers[region].url}/v2/health/live", timeout=5).status_code == 503
    finally:
        route53_twin.board.clear()
    assert route53_twin.model_servers[region].ready()[0]


def test_faults_given_at_start_are_in_force(twin_factory):
    twin = twin_factory(ROUTE53_RUNBOOK, faults=Faults(region_down=frozenset({"us-west-2"})))
    assert httpx.get(f"{twin.model_servers['us-west-2'].url}/v2/health/live", timeout=5).status_code == 503
    assert httpx.get(f"{twin.control_url}/faults", timeout=5).json()["region_down"] == ["us-west-2"]


def test_a_fault_naming_an_unknown_region_is_refused(tmp_path):
    from drpilot_twin.twin import Twin

    from drpilot.domain.loader import load_runbook

    with pytest.raises(FaultError, match="unknown region"):
        Twin(load_runbook(ROUTE53_RUNBOOK), tmp_path, faults=Faults(pods_stalled=frozenset({"mars-1"})))


@pytest.mark.skipif(
    prometheus_binary() is None or alertmanager_binary() is None,
    reason="Debian prometheus / prometheus-alertmanager not installed",
)
def test_prometheus_and_alertmanager_serve_the_runbooks_checks(twin_factory, tmp_path, webhook_stand_in):
    hook = webhook_stand_in
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "groups:\n"
        "  - name: sandbox\n"
        "    rules:\n"
        "      - alert: SandboxRegionDown\n"
        '        expr: up{job="inference"} == 0\n'
        "        labels: {runbook: llm-inference-gcp}\n"
    )
    twin = twin_factory(
        CLOUDDNS_RUNBOOK, prometheus=True, alertmanager=True, webhook_url=hook.url, prometheus_rules=[rules]
    )
    settings = load_settings(twin.env())
    runbook = twin.runbook
    region = runbook.primary
    # The runbook's own Prometheus URL, rewritten the way drpilot's probes rewrite it.
    prometheus = settings.providers.prometheus_map[runbook.regions[region].prometheus]
    query = f'sum(inference_requests_total{{region="{region}"}})'
    deadline = time.monotonic() + 20
    result: list = []
    while not result and time.monotonic() < deadline:
        result = httpx.get(f"{prometheus}/api/v1/query", params={"query": query}, timeout=5).json()["data"]["result"]
        time.sleep(0.25)
    assert result and float(result[0]["value"][1]) > 0, "the traffic generator's requests reach Prometheus"
    assert settings.webhook_listen == hook.url.split("/")[2]

    alert = {
        "labels": {"alertname": "InferenceRegionDown", "runbook": runbook.name, "region": region},
        "startsAt": datetime.now(UTC).isoformat(),
    }
    httpx.post(f"{twin.alertmanager_url}/api/v2/alerts", json=[alert], timeout=5).raise_for_status()
    assert hook.received.wait(15)
    assert hook.bodies[0]["alerts"][0]["labels"]["runbook"] == runbook.name

    # A dark region fails its scrape; the rule fires and the alert reaches the webhook.
    twin.board.update(region_down=["europe-west4"])
    deadline = time.monotonic() + 30
    fired: list = []
    while not fired and time.monotonic() < deadline:
        fired = [
            a for body in list(hook.bodies) for a in body["alerts"]
            if a["labels"]["alertname"] == "SandboxRegionDown"
        ]
        time.sleep(0.2)
    assert fired and fired[0]["labels"]["region"] == "europe-west4"


def test_reset_returns_to_the_runbooks_normal_state(twin_factory):
    import boto3
    from kubernetes import client as kube
    from kubernetes import config as kube_config

    twin = twin_factory(ROUTE53_RUNBOOK)
    runbook = twin.runbook
    env = twin.env()
    session = boto3.session.Session(
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"], aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        region_name=env["AWS_DEFAULT_REGION"],
    )
    s3 = session.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"])
    r53 = session.client("route53", endpoint_url=env["AWS_ENDPOINT_URL"])
    model = runbook.spec.models[0]
    bucket, _, prefix = model.artifacts["us-west-2"].removeprefix("s3://").partition("/")
    s3.delete_object(Bucket=bucket, Key=prefix + "model.safetensors")
    zone_id = r53.list_hosted_zones_by_name(DNSName=runbook.spec.dns.zone)["HostedZones"][0]["Id"]
    record = runbook.spec.dns.records[0]
    r53.change_resource_record_sets(HostedZoneId=zone_id, ChangeBatch={"Changes": [
        {"Action": "UPSERT", "ResourceRecordSet": {
            "Name": record.name, "Type": record.type.value, "TTL": record.ttl, "SetIdentifier": region,
            "Weight": weight, "ResourceRecords": [{"Value": record.targets[region]}]}}
        for region, weight in (("us-east-1", 0), ("us-west-2", 100))
    ]})
    workload = runbook.spec.workloads[0]
    api = kube_config.new_client_from_config(config_file=env["KUBECONFIG"], context="prod-usw2")
    apps = kube.AppsV1Api(api)
    apps.patch_namespaced_deployment_scale(workload.deployment, workload.namespace, {"spec": {"replicas": 5}})
    twin.board.update(pods_stalled=["us-west-2"])
    time.sleep(0.6)
    assert twin.weights() == {"us-east-1": 0, "us-west-2": 100}
    assert not twin.model_servers["us-west-2"].ready()[0]

    twin.reset()

    assert twin.board.now == Faults()
    assert twin.weights() == runbook.normal_weights()
    dep = apps.read_namespaced_deployment(workload.deployment, workload.namespace)
    assert dep.spec.replicas == workload.replicas.standby and dep.status.ready_replicas == workload.replicas.standby
    assert s3.head_object(Bucket=bucket, Key=prefix + "model.safetensors")["ContentLength"] > 0
    time.sleep(0.3)  # the model server's own short cache
    assert twin.model_servers["us-west-2"].ready() == (True, "")
    api.close()


def test_a_runbook_that_pins_its_hosted_zone_id_rehearses_unchanged(twin_factory, monkeypatch):
    """`spec.dns.zone_id` as production runbooks set it: drpilot's own DNS activity, pointed at
    the twin by its env alone, changes the twin's records through the pinned id."""
    from temporalio.testing import ActivityEnvironment

    from activities.contracts import DnsApplyInput
    from activities.dns.activities import DnsActivities
    from drpilot.domain.loader import load_runbook

    plain = load_runbook(ROUTE53_RUNBOOK)
    dns = plain.spec.dns.model_copy(update={"zone_id": "Z0PINNED4DRPILOT"})
    pinned = plain.model_copy(update={"spec": plain.spec.model_copy(update={"dns": dns})})
    twin = twin_factory(pinned)
    for key, value in twin.env().items():
        monkeypatch.setenv(key, value)
    activities = DnsActivities.from_settings(load_settings())
    failover = {"us-east-1": 0, "us-west-2": 100}
    result = ActivityEnvironment().run(
        activities.apply, DnsApplyInput(runbook=pinned, weights=failover, speed=FAST_SPEED)
    )
    assert result.status == "INSYNC"
    eventually(lambda: twin.weights() == failover, what="the twin reads the change")  # 0.5 s cache
    twin.reset()
    eventually(lambda: twin.weights() == pinned.normal_weights(), what="reset through the pinned zone")


@pytest.mark.parametrize("speed", [1.0, 60.0])
def test_a_latency_fault_above_the_p99_limit_is_unhealthy_at_any_speed(twin_factory, speed):
    # The twin does not divide request latency by its speed, and analysis judges the
    # runbook's limit as written: 1.5 s answers against a 1 s p99 limit are a rollback
    # at speed 60 as at speed 1, while the healthy region's loopback answers pass.
    import yaml
    from temporalio.testing import ActivityEnvironment

    from activities.contracts import AnalyseInput
    from activities.probes.activities import ProbeActivities
    from drpilot.domain.runbook import Runbook

    data = yaml.safe_load(ROUTE53_RUNBOOK.read_text())
    data["spec"]["traffic_shift"]["rollback"]["max_p99_latency"] = "1s"
    runbook = Runbook.model_validate(data)
    primary, standby = "us-east-1", "us-west-2"
    twin = twin_factory(runbook, speed=speed, traffic_rate=40, faults=Faults(extra_latency_seconds={primary: 1.5}))
    probes = ProbeActivities.from_settings(load_settings(twin.env()))
    eventually(lambda: twin.traffic.stats()[primary].ok >= 20, timeout=15)
    try:
        # With the speed, as the workflows call analyse, and without it.
        for given in (AnalyseInput(runbook=runbook, region=primary, window_seconds=1.5, speed=speed),
                      AnalyseInput(runbook=runbook, region=primary, window_seconds=1.5)):
            slow = ActivityEnvironment().run(probes.analyse, given)
            latency = next(e for e in slow.evidence if e.check == "p99 latency")
            assert not slow.healthy and not latency.passed and slow.p99_ms >= 1000, slow.evidence
        healthy = ActivityEnvironment().run(
            probes.analyse, AnalyseInput(runbook=runbook, region=standby, window_seconds=1.5, speed=speed)
        )
        assert healthy.healthy, healthy.evidence
    finally:
        probes.http.close()


def test_pods_serve_what_they_loaded_until_a_rollout_restart(twin_factory):
    # A pod loads the artifacts present when it starts: pods that restart while a model
    # file is missing serve without it after the file is repaired, and the health gate's
    # KServe v2 version check says so, until a rollout restart brings up pods that load it.
    import boto3
    from drpilot_twin.aws.s3 import split_s3_uri
    from temporalio.testing import ActivityEnvironment

    from activities.contracts import HealthInput, RolloutRestartInput
    from activities.kube.activities import KubeActivities
    from activities.kube.clusters import KubeconfigClients
    from activities.probes.activities import ProbeActivities

    twin = twin_factory(ROUTE53_RUNBOOK, traffic=False)
    runbook, region = twin.runbook, "us-west-2"
    broken, fine = runbook.spec.models
    env = twin.env()
    s3 = boto3.client("s3", endpoint_url=twin.aws_url, region_name=env["AWS_DEFAULT_REGION"],
                      aws_access_key_id=env["AWS_ACCESS_KEY_ID"], aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"])
    kube = KubeActivities(KubeconfigClients(str(twin.kubeconfig)))
    probes = ProbeActivities.from_settings(load_settings(env))
    probes.http = httpx.Client(trust_env=False, timeout=10)

    def restart(key: str):
        return ActivityEnvironment().run(kube.rollout_restart, RolloutRestartInput(
            runbook=runbook, region=region, restarted_at=key, timeout_seconds=30, speed=twin.speed))

    def gate():
        return ActivityEnvironment().run(probes.health_gate, HealthInput(runbook=runbook, region=region, speed=twin.speed))

    version_check = f"GET /v2/models/{broken.name}/versions/{broken.version}/ready"
    try:
        assert gate().passed  # seeded: every pod loaded every model
        bucket, prefix = split_s3_uri(broken.artifacts[region])
        key = next(o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix=prefix)["Contents"]
                   if not o["Key"].endswith(broken.manifest))
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        s3.delete_object(Bucket=bucket, Key=key)
        time.sleep(1.0)  # the twin's view of the buckets refreshes at most every second
        before = restart("run-1/before-repair")
        assert sorted(before.restarted) == ["ml-serving/inference-gateway", "ml-serving/inference-service"]
        s3.put_object(Bucket=bucket, Key=key, Body=body)  # repaired, as artifacts.sync copies it
        eventually(lambda: twin.model_servers[region].ready()[0], timeout=10, what="artifacts complete again")

        stale = gate()
        assert not stale.passed
        evidence = {e.check: e for e in stale.evidence}
        assert evidence["GET /v2/health/ready"].passed  # the files are all there now...
        assert not evidence[version_check].passed  # ...but the running pods never loaded them
        assert evidence[version_check].observed.startswith("404")
        assert "started before its artifacts were complete" in evidence[version_check].observed
        assert evidence[f"GET /v2/models/{fine.name}/versions/{fine.version}/ready"].passed

        after = restart("run-1/after-repair")
        assert sorted(after.restarted) == ["ml-serving/inference-gateway", "ml-serving/inference-service"]
        assert all(d.ready == d.replicas for d in after.deployments)
        healthy = gate()
        assert healthy.passed, healthy.summary
        assert next(e for e in healthy.evidence if e.check == version_check).observed.startswith("200")
        # A retry of the same restart restarts nothing.
        pods = {p["metadata"]["name"] for p in twin.serving_pods(region)}
        assert restart("run-1/after-repair").restarted == []
        assert {p["metadata"]["name"] for p in twin.serving_pods(region)} == pods
    finally:
        probes.http.close()

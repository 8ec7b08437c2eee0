"""images.check and quota.check against the twin: its Kubernetes emulator (the Deployments'
images) and its AWS front (ECR per region through moto, Service Quotas the front answers)."""

from __future__ import annotations

import base64
import json

import boto3
import pytest
from drpilot_twin.aws.ecr import ecr_image, seed_ecr
from drpilot_twin.aws.moto_server import AWS_ENV
from kubernetes import client as k8s

from activities.contracts import CapacityResult, ImagesInput, QuotaInput
from activities.standby import StandbyActivities
from drpilot.domain.loader import load_runbook
from tests.support.activities import run
from tests.support.paths import ROUTE53_RUNBOOK
from tests.support.registry import loopback_registry

RUNBOOK = load_runbook(ROUTE53_RUNBOOK)
DR, FAILED = "us-west-2", "us-east-1"


@pytest.fixture
def standby(front, board, kube_clusters):
    front.reset()
    board.clear()

    seed_ecr(lambda region: _in("ecr", front.url, region), RUNBOOK)
    return StandbyActivities(kube_clusters.clients, lambda service, region: _in(service, front.url, region))


def _in(service: str, url: str, region: str):
    """A client of the twin's AWS front signed for `region` (the front reads the region there)."""
    return boto3.client(service, endpoint_url=url, region_name=region, aws_access_key_id=AWS_ENV["AWS_ACCESS_KEY_ID"],
                        aws_secret_access_key=AWS_ENV["AWS_SECRET_ACCESS_KEY"])


def images(standby):
    return run(standby.images, ImagesInput(runbook=RUNBOOK, region=DR))


def test_images_in_the_regions_own_registry_are_ready_and_tags_are_noted(standby):
    result = images(standby)
    assert result.verdict == "ok", result.detail
    assert result.images == [ecr_image(DR, "llm-inference", w.deployment) for w in RUNBOOK.workloads_in(DR)]
    assert result.detail.startswith("2 image(s) present; ") and "not pinned by digest" in result.detail


def test_an_image_the_region_lacks_is_a_finding(standby, board):
    board.update(image_missing={DR: ecr_image(DR, "llm-inference", "inference-service")})
    result = images(standby)
    assert result.verdict == "finding" and not result.ready
    assert f"{ecr_image(DR, 'llm-inference', 'inference-service')}: not in {DR}'s registry (ECR ImageNotFoundException)" in result.detail


def test_an_image_pulled_from_the_failed_regions_registry_is_a_finding(standby, kube_clusters):
    api = kube_clusters.clients[RUNBOOK.regions[DR].kube.context]
    foreign = ecr_image(FAILED, "llm-inference", "inference-service")
    k8s.AppsV1Api(api).patch_namespaced_deployment(
        "inference-service", "ml-serving",
        {"spec": {"template": {"spec": {"containers": [{"name": "inference-service", "image": foreign}]}}}},
    )
    result = images(standby)
    assert result.verdict == "finding"
    assert f"{foreign} pulls from {FAILED}'s registry: fails while {FAILED} is down" in result.detail


def scale_out(nodes: int) -> CapacityResult:
    return CapacityResult(
        region=DR, verdict="fits after scale-out", detail="...",
        scale_out={"g5.12xlarge": [nodes, 48]}, running_vcpus={"g5.12xlarge": 192},
    )


def test_the_gpu_quota_caps_the_scale_out(standby, board):
    fine = run(standby.quota, QuotaInput(runbook=RUNBOOK, region=DR, capacity=scale_out(2)))
    assert fine.verdict == "ok"
    assert fine.detail == "Running On-Demand G and VT instances: 96 vCPUs to start (g5.12xlarge), 192 running, quota 1536"
    board.update(quota={DR: 240})
    short = run(standby.quota, QuotaInput(runbook=RUNBOOK, region=DR, capacity=scale_out(2)))
    assert short.verdict == "short" and not short.ready
    assert short.detail.endswith("192 running, quota 240: short by 48")


def test_a_quota_that_cannot_be_read_is_not_checked_never_ok(kube_clusters):
    closed = StandbyActivities(kube_clusters.clients, lambda service, region: _in(service, "http://127.0.0.1:9", region))
    result = run(closed.quota, QuotaInput(runbook=RUNBOOK, region=DR, capacity=scale_out(1)))
    assert result.verdict == "not checked" and not result.ready


def pull_secret(host: str, user: str, password: str) -> dict:
    config = {"auths": {host: {"auth": base64.b64encode(f"{user}:{password}".encode()).decode()}}}
    return {"metadata": {"name": "regcred"}, "type": "kubernetes.io/dockerconfigjson",
            "data": {".dockerconfigjson": base64.b64encode(json.dumps(config).encode()).decode()}}


def test_an_image_outside_ecr_is_asked_of_its_registry_with_the_pull_secret(standby, kube_clusters):
    api = kube_clusters.clients[RUNBOOK.regions[DR].kube.context]
    with loopback_registry("puller", "s3cret") as registry:
        image = f"{registry.host}/llm/server:1"
        k8s.AppsV1Api(api).patch_namespaced_deployment("inference-service", "ml-serving", {"spec": {"template": {"spec": {
            "containers": [{"name": "inference-service", "image": image}], "imagePullSecrets": [{"name": "regcred"}],
        }}}})
        # No secret there yet: nothing is sent, and it is said.
        result = images(standby)
        assert result.verdict == "ok" and registry.requests == []
        assert f"{image}: not checked (not an ECR image; cannot read pull secret ml-serving/regcred (404))" in result.detail
        core = k8s.CoreV1Api(api)
        core.create_namespaced_secret("ml-serving", pull_secret(registry.host, "puller", "s3cret"))
        result = images(standby)
        assert result.verdict == "finding"  # the manifest is not there
        assert f"{image}: not in {registry.host} (manifest HEAD: 404)" in result.detail
        assert [m for m, _ in registry.requests] == ["HEAD", "GET", "HEAD"]  # challenge, token, with it
        registry.manifests.add(("llm/server", "1"))
        assert images(standby).verdict == "ok"
        core.replace_namespaced_secret("regcred", "ml-serving", pull_secret(registry.host, "puller", "wrong"))
        refused = images(standby)
        assert refused.verdict == "finding"
        assert f"{image}: {registry.host} refuses the pull secret's credentials (token 401): pulls would fail" in refused.detail

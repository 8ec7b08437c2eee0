"""KubeActivities against the Kubernetes emulator: real `kubernetes` client, real HTTPS.

Activities run in temporalio's ActivityEnvironment (heartbeats and heartbeat details of a
previous attempt included); the clients come from a generated kubeconfig by context name.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml
from drpilot_twin.kube.api import DEFAULT_POD_START_SECONDS, write_kubeconfig
from kubernetes import client as k8s
from temporalio.exceptions import ApplicationError

from activities.contracts import KubeReadInput, ScaleInput
from activities.kube.activities import KubeActivities
from activities.kube.clusters import KubeconfigClients
from drpilot.domain.loader import load_runbook
from drpilot.domain.settings import load_settings
from tests.support.activities import run
from tests.support.paths import ROUTE53_RUNBOOK

RUNBOOK = load_runbook(ROUTE53_RUNBOOK)
SPEED = 60.0  # pods ready 0.5 s after a scale-up; polls every 33 ms
NS = "ml-serving"
DR = "us-west-2"


@pytest.fixture
def twin(kube_clusters) -> SimpleNamespace:
    return SimpleNamespace(**vars(kube_clusters), activities=KubeActivities(kube_clusters.clients))


def scale_input(to: str = "active", **changes: Any) -> ScaleInput:
    return ScaleInput(
        runbook=RUNBOOK,
        region=DR,
        to=to,
        timeout_seconds=changes.pop("timeout_seconds", 20.0),
        speed=SPEED,
        **changes,
    )


def kubeconfig_with_token(twin, tmp_path: Path, token: str) -> KubeconfigClients:
    config = yaml.safe_load(twin.kubeconfig.read_text())
    for user in config["users"]:
        user["user"]["token"] = token
    path = tmp_path / f"kubeconfig-{token[:6]}"
    path.write_text(yaml.safe_dump(config))
    return KubeconfigClients(str(path))


# --------------------------------------------------------------------------------- read
def test_read_reports_each_workloads_replicas_and_ready(twin):
    state = run(twin.activities.read, KubeReadInput(runbook=RUNBOOK, region="us-east-1"))
    assert state.region == "us-east-1"
    assert [(d.namespace, d.name, d.replicas, d.ready) for d in state.deployments] == [
        (NS, "inference-service", 6, 6),
        (NS, "inference-gateway", 3, 3),
    ]
    standby = run(twin.activities.read, KubeReadInput(runbook=RUNBOOK, region=DR))
    assert [(d.replicas, d.ready) for d in standby.deployments] == [(1, 1), (1, 1)]


# -------------------------------------------------------------------------------- scale
def test_scale_to_active_waits_for_ready_pods_and_heartbeats_the_counts(twin):
    beats: list[Any] = []
    result = run(twin.activities.scale, scale_input(), beats)
    assert result.changed == [f"{NS}/inference-service", f"{NS}/inference-gateway"]
    assert [(d.name, d.replicas, d.ready) for d in result.deployments] == [
        ("inference-service", 6, 6),
        ("inference-gateway", 3, 3),
    ]
    assert twin.clusters[DR].ready_replicas(NS, "inference-service") == 6
    waiting = [b for b in beats if b.get("phase") == "waiting"]
    assert waiting[0]["ready"][f"{NS}/inference-service"] < 6  # it really waited
    assert waiting[-1]["ready"] == {f"{NS}/inference-service": 6, f"{NS}/inference-gateway": 3}
    assert waiting[-1]["desired"] == {f"{NS}/inference-service": 6, f"{NS}/inference-gateway": 3}


def test_scale_reports_the_pod_start_it_waited_for_at_its_unscaled_length(twin):
    # The twin starts pods DEFAULT_POD_START_SECONDS after a scale-up, divided by its speed;
    # the rehearsal RTO projection counts that wait at its length at speed 1.
    result = run(twin.activities.scale, scale_input())
    (wait,) = result.waits
    assert wait.kind == "pods"
    # Ordered, not timed: the twin starts the pods no sooner than its delay / speed (a busy
    # machine only makes it later), and the projection scales what was waited back to speed 1,
    # within the polling's uncertainty.
    assert wait.seconds >= DEFAULT_POD_START_SECONDS / SPEED - 0.05, wait
    assert wait.unscaled_seconds >= DEFAULT_POD_START_SECONDS - wait.uncertainty_seconds, wait
    assert abs(wait.unscaled_seconds - wait.seconds * SPEED) <= wait.uncertainty_seconds + 0.01, wait
    # Already scaled: nothing waited for, nothing to project.
    assert run(twin.activities.scale, scale_input()).waits == []


def test_scaling_twice_is_one_change(twin):
    run(twin.activities.scale, scale_input())
    before = {
        name: twin.clusters[DR].deployment(NS, name)["metadata"]
        for name in ("inference-service", "inference-gateway")
    }
    again = run(twin.activities.scale, scale_input())
    assert again.changed == []
    after = {name: twin.clusters[DR].deployment(NS, name)["metadata"] for name in before}
    for name in before:
        assert after[name]["resourceVersion"] == before[name]["resourceVersion"]
        assert after[name]["generation"] == before[name]["generation"]


def test_exact_counts_touch_only_the_named_deployments_and_scale_down_at_once(twin):
    result = run(
        twin.activities.scale,
        ScaleInput(
            runbook=RUNBOOK,
            region="us-east-1",
            to="exact",
            counts={f"{NS}/inference-service": 2},
            timeout_seconds=5,
            speed=SPEED,
        ),
    )
    assert result.changed == [f"{NS}/inference-service"]
    assert [(d.name, d.replicas) for d in result.deployments] == [("inference-service", 2)]
    assert twin.clusters["us-east-1"].deployment(NS, "inference-service")["status"]["replicas"] == 2
    assert twin.clusters["us-east-1"].deployment(NS, "inference-gateway")["spec"]["replicas"] == 3


def test_stalled_pods_end_in_a_non_retryable_error_naming_the_short_deployment(twin):
    twin.board.update(pods_stalled=[DR])
    with pytest.raises(ApplicationError) as failure:
        run(twin.activities.scale, scale_input(timeout_seconds=1.0))
    err = failure.value
    assert err.non_retryable and err.type == "PodsNotReady"
    assert f"{NS}/inference-service has 1/6 ready" in err.message
    assert f"{NS}/inference-gateway has 1/3 ready" in err.message
    assert "5 Pending (Unschedulable: 0/4 nodes are available" in err.message
    assert "kubectl --context prod-usw2" in err.message
    short = err.details[0]["short"]
    assert [(s["deployment"], s["ready"], s["desired"]) for s in short] == [
        (f"{NS}/inference-service", 1, 6),
        (f"{NS}/inference-gateway", 1, 3),
    ]


def test_a_retry_resumes_from_the_heartbeat_deadline_and_changes(twin):
    twin.board.update(pods_stalled=[DR])
    beats: list[Any] = []
    with pytest.raises(ApplicationError):
        run(twin.activities.scale, scale_input(timeout_seconds=0.3), beats)
    last = beats[-1]
    # The retry inherits the start from the heartbeat: backdated 10 s against a 2 s budget,
    # its deadline is long past, so it reports the inherited wait and fails on the first
    # look. A retry that started a fresh clock would report ~2 s and poll many times.
    retry_beats: list[Any] = []
    with pytest.raises(ApplicationError) as again:
        run(
            twin.activities.scale,
            scale_input(timeout_seconds=2.0),
            retry_beats,
            resume={**last, "started_at": time.time() - 10},
        )
    assert again.value.type == "PodsNotReady"
    waited = re.search(r"not ready after ([\d.]+)s", again.value.message)
    assert waited is not None and float(waited.group(1)) >= 10
    assert [b["phase"] for b in retry_beats if b.get("phase") == "waiting"] == ["waiting"]
    # Once the pods can start, a retry with budget left reports the first attempt's patches.
    twin.board.update(pods_stalled=[])
    result = run(
        twin.activities.scale,
        scale_input(timeout_seconds=30.0),
        resume={**last, "started_at": time.time()},
    )
    assert result.changed == [f"{NS}/inference-service", f"{NS}/inference-gateway"]
    assert [d.ready for d in result.deployments] == [6, 3]


def test_a_retry_that_still_has_to_patch_gives_those_pods_the_whole_budget(twin):
    # The first attempt patched inference-service, heartbeated, and died before patching
    # inference-gateway; its retry comes a heartbeat timeout later, past the inherited
    # deadline. The gateway's pods are only asked for now: the retry waits for them (0.5 s
    # at this speed) instead of failing them on the first look (the CI failure of
    # tests/e2e/test_worker_chaos.py, a worker SIGKILLed between the two patches).
    apps = k8s.AppsV1Api(twin.clients["prod-usw2"])
    apps.patch_namespaced_deployment_scale("inference-service", NS, {"spec": {"replicas": 6}})
    resume = {"started_at": time.time() - 60, "changed": [f"{NS}/inference-service"], "phase": "patched"}
    result = run(twin.activities.scale, scale_input(timeout_seconds=5.0), resume=resume)
    assert result.changed == [f"{NS}/inference-service", f"{NS}/inference-gateway"]
    assert [d.ready for d in result.deployments] == [6, 3]


# ------------------------------------------------------------------------------- errors
def test_a_missing_deployment_is_non_retryable_and_names_it(twin):
    api = twin.clients["prod-usw2"]
    k8s.AppsV1Api(api).delete_namespaced_deployment("inference-gateway", NS)
    with pytest.raises(ApplicationError) as failure:
        run(twin.activities.scale, scale_input())
    err = failure.value
    assert err.non_retryable and err.type == "KubeNotFound"
    assert (
        f"Deployment {NS}/inference-gateway not found in kube context prod-usw2 (region {DR})"
        in err.message
    )
    assert "spec.workloads" in err.message


def test_a_region_that_is_down_is_retryable(twin):
    twin.board.update(region_down=[DR])
    with pytest.raises(ApplicationError) as failure:
        run(twin.activities.scale, scale_input())
    assert not failure.value.non_retryable
    assert failure.value.type == "KubeUnavailable" and "503" in failure.value.message
    with pytest.raises(ApplicationError) as read_failure:
        run(twin.activities.read, KubeReadInput(runbook=RUNBOOK, region=DR))
    assert not read_failure.value.non_retryable


def test_an_unreachable_cluster_is_retryable(twin):
    twin.clusters[DR].stop()
    with pytest.raises(ApplicationError) as failure:
        run(twin.activities.read, KubeReadInput(runbook=RUNBOOK, region=DR))
    assert not failure.value.non_retryable and failure.value.type == "KubeUnreachable"


def test_rejected_credentials_and_missing_rbac_are_non_retryable_with_the_fix(twin, tmp_path):
    unauthorized = KubeActivities(kubeconfig_with_token(twin, tmp_path, "wrong-token"))
    with pytest.raises(ApplicationError) as failure:
        run(unauthorized.read, KubeReadInput(runbook=RUNBOOK, region=DR))
    assert failure.value.non_retryable and failure.value.type == "KubeUnauthorized"
    assert "context prod-usw2" in failure.value.message

    viewer = twin.clusters[DR].add_user("drpilot-viewer")
    read_only = KubeActivities(kubeconfig_with_token(twin, tmp_path, viewer))
    assert run(read_only.read, KubeReadInput(runbook=RUNBOOK, region=DR)).deployments
    with pytest.raises(ApplicationError) as forbidden:
        run(read_only.scale, scale_input())
    err = forbidden.value
    assert err.non_retryable and err.type == "KubeForbidden"
    assert 'cannot patch resource "deployments/scale"' in err.message
    assert "RBAC verbs get, patch on deployments and deployments/scale" in err.message


def test_a_context_missing_from_the_kubeconfig_is_non_retryable(twin, tmp_path):
    only_primary = write_kubeconfig(tmp_path / "one", [twin.clusters["us-east-1"]])
    activities = KubeActivities(KubeconfigClients(str(only_primary)))
    with pytest.raises(ApplicationError) as failure:
        run(activities.read, KubeReadInput(runbook=RUNBOOK, region=DR))
    assert failure.value.non_retryable and failure.value.type == "KubeContextMissing"
    assert (
        "'prod-usw2'" in failure.value.message
        and "spec.regions.us-west-2.kube.context" in failure.value.message
    )


def test_from_settings_follows_KUBECONFIG(twin, monkeypatch):
    monkeypatch.setenv("KUBECONFIG", str(twin.kubeconfig))
    activities = KubeActivities.from_settings(load_settings({}))
    assert [f.__name__ for f in activities.all()] == ["read", "scale", "rollout_restart", "capacity"]
    state = run(activities.read, KubeReadInput(runbook=RUNBOOK, region="us-east-1"))
    assert [d.ready for d in state.deployments] == [6, 3]

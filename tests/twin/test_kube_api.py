"""The Kubernetes API emulator through the real `kubernetes` client and kubectl (real HTTPS).

Every client here is loaded from a generated kubeconfig by context name, exactly as
drpilot's activities and an on-call engineer's kubectl load theirs.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from drpilot_twin.faults import FaultBoard
from drpilot_twin.kube.api import KubeCluster, start_kube_clusters, write_kubeconfig
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes import watch as k8s_watch
from kubernetes.client.exceptions import ApiException

from drpilot.domain.loader import load_runbook
from drpilot.domain.runbook import Runbook
from tests.support.twin import eventually

ROOT = Path(__file__).resolve().parents[2]
RUNBOOK = load_runbook(ROOT / "runbooks" / "llm-inference.yaml")
CLOUDDNS_RUNBOOK = load_runbook(ROOT / "runbooks" / "llm-inference-clouddns.yaml")
# 30 s simulated pod start / 60 = 0.5 s; a Velero restore takes ~0.4 s.
SPEED = 60.0
NS = "ml-serving"


class World:
    def __init__(
        self,
        runbook: Runbook,
        board: FaultBoard,
        clusters: dict[str, KubeCluster],
        kubeconfig: Path,
    ):
        self.runbook, self.board, self.clusters, self.kubeconfig = (
            runbook,
            board,
            clusters,
            kubeconfig,
        )
        self._clients: list[k8s.ApiClient] = []

    def api(self, region: str) -> k8s.ApiClient:
        context = self.runbook.regions[region].kube.context
        client = k8s_config.new_client_from_config(
            config_file=str(self.kubeconfig), context=context, persist_config=False
        )
        self._clients.append(client)
        return client

    def apps(self, region: str) -> k8s.AppsV1Api:
        return k8s.AppsV1Api(self.api(region))

    def core(self, region: str) -> k8s.CoreV1Api:
        return k8s.CoreV1Api(self.api(region))

    def custom(self, region: str) -> k8s.CustomObjectsApi:
        return k8s.CustomObjectsApi(self.api(region))

    def close(self) -> None:
        for client in self._clients:
            client.close()


@pytest.fixture
def world(tmp_path) -> Iterator[World]:
    board = FaultBoard()
    clusters = start_kube_clusters(RUNBOOK, board, speed=SPEED)
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", clusters)
    w = World(RUNBOOK, board, clusters, kubeconfig)
    yield w
    w.close()
    for cluster in clusters.values():
        cluster.stop()


def rolled_out(dep: k8s.V1Deployment, replicas: int) -> k8s.V1Deployment | None:
    """The deployment when its rollout is complete (what `kubectl rollout status` waits for)."""
    s = dep.status
    done = (
        dep.spec.replicas == replicas
        and s.observed_generation == dep.metadata.generation
        and s.replicas == s.updated_replicas == s.ready_replicas == replicas
    )
    return dep if done else None


def status_of(exc: ApiException) -> dict[str, Any]:
    return json.loads(exc.body)


def deployment(
    name: str, replicas: int = 1, labels: dict[str, str] | None = None
) -> dict[str, Any]:
    labels = labels or {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": dict(labels)},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": labels["app"]}},
            "template": {
                "metadata": {"labels": dict(labels)},
                "spec": {
                    "containers": [
                        {
                            "name": "main",
                            "image": "example/app:1",
                            "env": [{"name": "A", "value": "1"}],
                        }
                    ]
                },
            },
        },
    }


# ------------------------------------------------------------------------------ discovery
def test_discovery_lists_what_kubectl_and_the_scale_client_need(world):
    api = world.api("us-east-1")
    assert k8s.VersionApi(api).get_code().git_version.startswith("v1.")
    groups = {g.name: g for g in k8s.ApisApi(api).get_api_versions().groups}
    assert {"apps", "velero.io"} <= set(groups)
    resources = {r.name: r for r in k8s.AppsV1Api(api).get_api_resources().resources}
    assert resources["deployments"].short_names == ["deploy"]
    scale = resources["deployments/scale"]
    assert (scale.group, scale.version, scale.kind) == ("autoscaling", "v1", "Scale")
    core = {r.name for r in k8s.CoreV1Api(api).get_api_resources().resources}
    assert {"namespaces", "pods"} <= core


# ---------------------------------------------------------------------------------- seed
def test_seed_builds_the_runbook_regions_already_running(world):
    for region, spec in RUNBOOK.regions.items():
        core, apps = world.core(region), world.apps(region)
        namespaces = {n.metadata.name for n in core.list_namespace().items}
        assert {NS, "velero"} <= namespaces
        for w in RUNBOOK.workloads_in(region):
            dep = apps.read_namespaced_deployment(w.deployment, w.namespace)
            expected = w.replicas.active if spec.role.value == "primary" else w.replicas.standby
            assert dep.spec.replicas == expected
            assert dep.status.ready_replicas == expected  # ready at seed time, no waiting
            assert dep.metadata.labels["app"] == w.deployment
            assert world.clusters[region].ready_replicas(w.namespace, w.deployment) == expected
        backup = world.custom(region).get_namespaced_custom_object(
            "velero.io", "v1", "velero", "backups", "ml-backup-daily"
        )
        assert backup["status"]["phase"] == "Completed"
        assert backup["spec"]["includedNamespaces"] == [NS]


def test_seed_uses_active_replicas_in_every_serving_region_of_an_active_active_runbook(tmp_path):
    board = FaultBoard()
    clusters = start_kube_clusters(CLOUDDNS_RUNBOOK, board, speed=SPEED)
    try:
        for region in CLOUDDNS_RUNBOOK.regions:
            assert clusters[region].ready_replicas("serving", "vllm-llama") == 8
        assert clusters["us-central1"].ready_replicas("serving", "missing") == 0
    finally:
        for cluster in clusters.values():
            cluster.stop()


def test_kubeconfig_names_contexts_by_runbook_and_is_private(world):
    config = yaml.safe_load(world.kubeconfig.read_text())
    assert {c["name"] for c in config["contexts"]} == {"prod-use1", "prod-usw2"}
    servers = {c["name"]: c["cluster"]["server"] for c in config["clusters"]}
    assert servers["prod-usw2"] == world.clusters["us-west-2"].url
    assert servers["prod-usw2"].startswith("https://127.0.0.1:")
    assert stat.S_IMODE(os.stat(world.kubeconfig).st_mode) == 0o600


# ------------------------------------------------------------------------- deployments
def test_create_conflict_and_not_found_answer_like_the_api_server(world):
    apps = world.apps("us-west-2")
    created = apps.create_namespaced_deployment(NS, deployment("batch"))
    assert created.metadata.generation == 1 and created.metadata.resource_version
    with pytest.raises(ApiException) as conflict:
        apps.create_namespaced_deployment(NS, deployment("batch"))
    assert conflict.value.status == 409
    assert status_of(conflict.value)["reason"] == "AlreadyExists"
    assert status_of(conflict.value)["message"] == 'deployments.apps "batch" already exists'
    with pytest.raises(ApiException) as missing:
        apps.read_namespaced_deployment("nope", NS)
    assert missing.value.status == 404
    assert status_of(missing.value) == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": 'deployments.apps "nope" not found',
        "reason": "NotFound",
        "details": {"name": "nope", "group": "apps", "kind": "deployments"},
        "code": 404,
    }
    with pytest.raises(ApiException) as no_namespace:
        apps.create_namespaced_deployment("absent", deployment("batch"))
    assert no_namespace.value.status == 404
    assert status_of(no_namespace.value)["message"] == 'namespaces "absent" not found'
    bad = deployment("mismatch")
    bad["spec"]["selector"]["matchLabels"] = {"app": "other"}
    with pytest.raises(ApiException) as invalid:
        apps.create_namespaced_deployment(NS, bad)
    assert invalid.value.status == 422
    assert "`selector` does not match template `labels`" in status_of(invalid.value)["message"]


def test_list_filters_by_label_selector(world):
    apps = world.apps("us-west-2")
    apps.create_namespaced_deployment(
        NS, deployment("batch", labels={"app": "batch", "tier": "offline"})
    )

    def names(selector: str) -> set[str]:
        return {
            d.metadata.name
            for d in apps.list_namespaced_deployment(NS, label_selector=selector).items
        }

    assert names("app=inference-service") == {"inference-service"}
    assert names("app in (inference-gateway, batch)") == {"inference-gateway", "batch"}
    assert names("app!=batch") == {"inference-service", "inference-gateway"}
    assert names("tier") == {"batch"}
    assert names("!tier") == {"inference-service", "inference-gateway"}
    assert names("app notin (batch),app") == {"inference-service", "inference-gateway"}
    everywhere = apps.list_deployment_for_all_namespaces(label_selector="tier=offline").items
    assert [d.metadata.namespace for d in everywhere] == [NS]
    with pytest.raises(ApiException) as bad:
        apps.list_namespaced_deployment(NS, label_selector="app in in")
    assert bad.value.status == 400


def test_list_pages_with_limit_and_continue(world):
    apps = world.apps("us-west-2")
    first = apps.list_namespaced_deployment(NS, limit=1)
    assert len(first.items) == 1 and first.metadata._continue
    rest = apps.list_namespaced_deployment(NS, limit=1, _continue=first.metadata._continue)
    assert len(rest.items) == 1 and not rest.metadata._continue
    assert first.items[0].metadata.name != rest.items[0].metadata.name


def test_patches_move_resource_version_and_generation_only_when_they_change_something(world):
    apps = world.apps("us-west-2")
    apps.create_namespaced_deployment(NS, deployment("batch"))
    eventually(lambda: apps.read_namespaced_deployment("batch", NS).status.ready_replicas == 1)
    before = apps.read_namespaced_deployment("batch", NS)

    # Strategic merge (the client's default for a dict): containers merge by name.
    patched = apps.patch_namespaced_deployment(
        "batch",
        NS,
        {
            "spec": {
                "template": {
                    "spec": {"containers": [{"name": "main", "env": [{"name": "B", "value": "2"}]}]}
                }
            }
        },
    )
    container = patched.spec.template.spec.containers[0]
    assert container.image == "example/app:1"
    assert [(e.name, e.value) for e in container.env] == [("A", "1"), ("B", "2")]
    assert patched.metadata.generation == before.metadata.generation + 1
    assert int(patched.metadata.resource_version) > int(before.metadata.resource_version)

    # A metadata-only change moves resourceVersion, not generation.
    labelled = apps.patch_namespaced_deployment(
        "batch", NS, {"metadata": {"labels": {"team": "ml"}}}
    )
    assert labelled.metadata.generation == patched.metadata.generation
    assert int(labelled.metadata.resource_version) > int(patched.metadata.resource_version)

    # JSON patch (a list body).
    replaced = apps.patch_namespaced_deployment(
        "batch", NS, [{"op": "replace", "path": "/spec/replicas", "value": 2}]
    )
    assert replaced.spec.replicas == 2

    # Merge patch through the raw API (the client has no switch for it); null deletes a key.
    api = apps.api_client
    api.call_api(
        *api.param_serialize(
            "PATCH",
            "/apis/apps/v1/namespaces/{namespace}/deployments/{name}",
            path_params={"namespace": NS, "name": "batch"},
            header_params={
                "Content-Type": "application/merge-patch+json",
                "Accept": "application/json",
            },
            body={"metadata": {"labels": {"team": None}}},
            auth_settings=["BearerToken"],
        )
    ).read()
    merged = apps.read_namespaced_deployment("batch", NS)
    assert "team" not in merged.metadata.labels

    # A patch that changes nothing is not a write.
    settled = eventually(lambda: rolled_out(apps.read_namespaced_deployment("batch", NS), 2))
    again = apps.patch_namespaced_deployment("batch", NS, {"spec": {"replicas": 2}})
    assert again.metadata.resource_version == settled.metadata.resource_version


def test_scale_subresource_reads_patches_and_checks_resource_version(world):
    apps = world.apps("us-west-2")
    scale = apps.read_namespaced_deployment_scale("inference-service", NS)
    assert (scale.kind, scale.api_version) == ("Scale", "autoscaling/v1")
    assert scale.spec.replicas == 1 and scale.status.selector == "app=inference-service"
    before = apps.read_namespaced_deployment("inference-service", NS)
    patched = apps.patch_namespaced_deployment_scale(
        "inference-service", NS, {"spec": {"replicas": 3}}
    )
    assert patched.spec.replicas == 3
    after = apps.read_namespaced_deployment("inference-service", NS)
    assert after.spec.replicas == 3 and after.metadata.generation == before.metadata.generation + 1
    stale = {
        "apiVersion": "autoscaling/v1",
        "kind": "Scale",
        "metadata": {
            "name": "inference-service",
            "namespace": NS,
            "resourceVersion": before.metadata.resource_version,
        },
        "spec": {"replicas": 5},
    }
    with pytest.raises(ApiException) as conflict:
        apps.replace_namespaced_deployment_scale("inference-service", NS, stale)
    assert conflict.value.status == 409 and status_of(conflict.value)["reason"] == "Conflict"
    fresh = apps.read_namespaced_deployment_scale("inference-service", NS)
    stale["metadata"]["resourceVersion"] = fresh.metadata.resource_version
    assert (
        apps.replace_namespaced_deployment_scale("inference-service", NS, stale).spec.replicas == 5
    )
    with pytest.raises(ApiException) as negative:
        apps.patch_namespaced_deployment_scale("inference-service", NS, {"spec": {"replicas": -1}})
    assert negative.value.status == 422


def test_status_subresource_changes_status_only(world):
    apps = world.apps("us-west-2")
    dep = apps.patch_namespaced_deployment(
        "inference-gateway", NS, {"status": {"readyReplicas": 99}}
    )
    assert dep.status.ready_replicas == 1  # the main resource ignores status
    via_status = apps.patch_namespaced_deployment_status(
        "inference-gateway", NS, {"spec": {"replicas": 7}, "status": {"observedGeneration": 42}}
    )
    assert via_status.spec.replicas == 1  # ...and the status subresource ignores spec
    assert via_status.status.observed_generation == 42


# -------------------------------------------------------------------------- controller
def test_pods_become_ready_over_the_pod_start_time_and_scale_down_is_immediate(world):
    apps, core = world.apps("us-west-2"), world.core("us-west-2")
    started = time.monotonic()
    apps.patch_namespaced_deployment_scale("inference-service", NS, {"spec": {"replicas": 4}})
    dep = eventually(
        lambda: (
            (d := apps.read_namespaced_deployment("inference-service", NS)).status.replicas == 4
            and d
        )
    )
    assert (dep.status.ready_replicas or 0) < 4
    pods = core.list_namespaced_pod(NS, label_selector="app=inference-service").items
    waiting = [p for p in pods if p.status.phase == "Pending"]
    assert (
        waiting
        and waiting[0].status.container_statuses[0].state.waiting.reason == "ContainerCreating"
    )
    eventually(
        lambda: apps.read_namespaced_deployment("inference-service", NS).status.ready_replicas == 4
    )
    # Not before the simulated pod start time (30 s / speed 60).
    assert time.monotonic() - started >= 30 / SPEED * 0.9
    progressing = {
        c.type: c
        for c in apps.read_namespaced_deployment("inference-service", NS).status.conditions
    }
    assert progressing["Progressing"].reason == "NewReplicaSetAvailable"

    # Scale-down does not wait on pod timing: with a pod start of ~4.6 h (1e6 s / 60) in
    # this region, pods still go within the short bound below.
    world.board.update(pod_start_seconds={"us-west-2": 1e6})
    apps.patch_namespaced_deployment_scale("inference-service", NS, {"spec": {"replicas": 1}})
    eventually(
        lambda: apps.read_namespaced_deployment("inference-service", NS).status.replicas == 1,
        timeout=1.0,
    )
    assert len(core.list_namespaced_pod(NS, label_selector="app=inference-service").items) == 1


def test_pod_start_time_fault_slows_one_region(world):
    world.board.update(pod_start_seconds={"us-west-2": 6000})  # 100 s there, 0.5 s elsewhere
    slow, fast = world.clusters["us-west-2"], world.clusters["us-east-1"]
    world.apps("us-west-2").patch_namespaced_deployment_scale(
        "inference-gateway", NS, {"spec": {"replicas": 2}}
    )
    world.apps("us-east-1").patch_namespaced_deployment_scale(
        "inference-gateway", NS, {"spec": {"replicas": 4}}
    )
    # The other region is the clock: its pods, created after the slow region's, come up at
    # the default start time; the slow region's are still not ready by then.
    eventually(
        lambda: fast.ready_replicas(NS, "inference-gateway") == 4, what="us-east-1 pods ready"
    )
    assert slow.ready_replicas(NS, "inference-gateway") == 1


def test_stalled_pods_stay_unschedulable_until_the_fault_clears(world):
    world.board.update(pods_stalled=["us-west-2"])
    apps, core = world.apps("us-west-2"), world.core("us-west-2")
    apps.patch_namespaced_deployment_scale("inference-service", NS, {"spec": {"replicas": 3}})
    time.sleep(1.0)
    assert apps.read_namespaced_deployment("inference-service", NS).status.ready_replicas == 1
    pending = [
        p
        for p in core.list_namespaced_pod(NS, label_selector="app=inference-service").items
        if p.status.phase == "Pending"
    ]
    assert len(pending) == 2
    scheduled = {c.type: c for c in pending[0].status.conditions}["PodScheduled"]
    assert (scheduled.status, scheduled.reason) == ("False", "Unschedulable")
    world.board.update(pods_stalled=[])
    eventually(
        lambda: apps.read_namespaced_deployment("inference-service", NS).status.ready_replicas == 3
    )


def test_a_region_that_is_down_answers_503_and_recovers(world):
    apps = world.apps("us-west-2")
    world.board.update(region_down=["us-west-2"])
    with pytest.raises(ApiException) as down:
        apps.read_namespaced_deployment("inference-service", NS)
    assert down.value.status == 503
    assert (
        world.apps("us-east-1").read_namespaced_deployment("inference-service", NS).spec.replicas
        == 6
    )
    world.board.update(region_down=[])
    assert apps.read_namespaced_deployment("inference-service", NS).spec.replicas == 1


def test_wrong_credentials_are_401_and_a_read_only_user_gets_403(world, tmp_path):
    cluster = world.clusters["us-west-2"]
    config = yaml.safe_load(world.kubeconfig.read_text())
    for user in config["users"]:
        user["user"]["token"] = "not-a-token"
    bad = tmp_path / "bad-kubeconfig"
    bad.write_text(yaml.safe_dump(config))
    apps = k8s.AppsV1Api(
        k8s_config.new_client_from_config(config_file=str(bad), context="prod-usw2")
    )
    with pytest.raises(ApiException) as unauthorized:
        apps.read_namespaced_deployment("inference-service", NS)
    assert unauthorized.value.status == 401

    viewer = cluster.add_user("viewer")
    for user in config["users"]:
        user["user"]["token"] = viewer
    bad.write_text(yaml.safe_dump(config))
    apps = k8s.AppsV1Api(
        k8s_config.new_client_from_config(config_file=str(bad), context="prod-usw2")
    )
    assert apps.read_namespaced_deployment("inference-service", NS).spec.replicas == 1
    with pytest.raises(ApiException) as forbidden:
        apps.patch_namespaced_deployment_scale("inference-service", NS, {"spec": {"replicas": 2}})
    assert forbidden.value.status == 403
    assert status_of(forbidden.value)["message"] == (
        'deployments.apps "inference-service" is forbidden: User "viewer" cannot patch resource '
        '"deployments/scale" in API group "apps" in the namespace "ml-serving"'
    )


def test_watch_streams_changes_from_a_resource_version(world):
    apps = world.apps("us-west-2")
    listed = apps.list_namespaced_deployment(NS, label_selector="app=inference-gateway")
    apps.patch_namespaced_deployment_scale("inference-gateway", NS, {"spec": {"replicas": 2}})
    seen = []
    stream = k8s_watch.Watch()
    for event in stream.stream(
        apps.list_namespaced_deployment,
        NS,
        label_selector="app=inference-gateway",
        resource_version=listed.metadata.resource_version,
        timeout_seconds=10,
    ):
        seen.append(
            (event["type"], event["object"].spec.replicas, event["object"].status.ready_replicas)
        )
        if event["object"].status.ready_replicas == 2:
            stream.stop()
    assert seen[0][:2] == ("MODIFIED", 2)
    assert seen[-1] == ("MODIFIED", 2, 2)
    assert all(kind == "MODIFIED" for kind, _, _ in seen)


# ------------------------------------------------------------------------------- Velero
def restore_body(name: str, backup: str = "ml-backup-daily") -> dict[str, Any]:
    return {
        "apiVersion": "velero.io/v1",
        "kind": "Restore",
        "metadata": {"name": name},
        "spec": {"backupName": backup, "includedNamespaces": [NS]},
    }


def phases_until_done(custom: k8s.CustomObjectsApi, name: str) -> list[str]:
    seen: list[str] = []

    def done() -> bool:
        phase = (
            custom.get_namespaced_custom_object("velero.io", "v1", "velero", "restores", name)
            .get("status", {})
            .get("phase", "")
        )
        if not seen or seen[-1] != phase:
            seen.append(phase)
        return phase in ("Completed", "PartiallyFailed", "Failed", "FailedValidation")

    eventually(done, what=f"restore {name} to finish")
    return seen


def test_restore_moves_through_velero_phases_and_restores_missing_deployments(world):
    apps, custom = world.apps("us-west-2"), world.custom("us-west-2")
    apps.delete_namespaced_deployment("inference-gateway", NS)
    created = custom.create_namespaced_custom_object(
        "velero.io", "v1", "velero", "restores", restore_body("r1")
    )
    assert created["metadata"]["name"] == "r1" and "status" not in created
    phases = phases_until_done(custom, "r1")
    assert phases[-1] == "Completed"
    assert "InProgress" in phases or "Finalizing" in phases
    done = custom.get_namespaced_custom_object("velero.io", "v1", "velero", "restores", "r1")
    assert done["status"]["progress"] == {"totalItems": 2, "itemsRestored": 2}
    assert done["status"].get("errors", 0) == 0
    restored = apps.read_namespaced_deployment("inference-gateway", NS)
    assert restored.metadata.labels["velero.io/restore-name"] == "r1"

    with pytest.raises(ApiException) as conflict:
        custom.create_namespaced_custom_object(
            "velero.io", "v1", "velero", "restores", restore_body("r1")
        )
    assert conflict.value.status == 409
    assert status_of(conflict.value)["message"] == 'restores.velero.io "r1" already exists'
    with pytest.raises(ApiException) as missing:
        custom.get_namespaced_custom_object("velero.io", "v1", "velero", "restores", "r2")
    assert missing.value.status == 404
    assert status_of(missing.value)["message"] == 'restores.velero.io "r2" not found'
    listed = custom.list_namespaced_custom_object("velero.io", "v1", "velero", "restores")
    assert [r["metadata"]["name"] for r in listed["items"]] == ["r1"]


def test_restore_faults_end_partially_failed_or_failed(world):
    custom = world.custom("us-west-2")
    # In-cluster objects that differ from the backup are skipped with a warning, as in Velero.
    world.apps("us-west-2").patch_namespaced_deployment_scale(
        "inference-service", NS, {"spec": {"replicas": 2}}
    )
    world.board.update(velero_partially_failed=["us-west-2"])
    custom.create_namespaced_custom_object(
        "velero.io", "v1", "velero", "restores", restore_body("partial")
    )
    assert phases_until_done(custom, "partial")[-1] == "PartiallyFailed"
    status = custom.get_namespaced_custom_object(
        "velero.io", "v1", "velero", "restores", "partial"
    )["status"]
    assert status["errors"] >= 1 and status["warnings"] >= 1

    world.board.update(velero_partially_failed=[], velero_failed=["us-west-2"])
    custom.create_namespaced_custom_object(
        "velero.io", "v1", "velero", "restores", restore_body("failed")
    )
    assert phases_until_done(custom, "failed")[-1] == "Failed"
    status = custom.get_namespaced_custom_object("velero.io", "v1", "velero", "restores", "failed")[
        "status"
    ]
    assert "velero_failed" in status["failureReason"]


def test_restore_of_a_missing_backup_fails_validation(world):
    custom = world.custom("us-west-2")
    custom.create_namespaced_custom_object(
        "velero.io", "v1", "velero", "restores", restore_body("orphan", backup="no-such-backup")
    )
    assert phases_until_done(custom, "orphan")[-1] == "FailedValidation"
    status = custom.get_namespaced_custom_object("velero.io", "v1", "velero", "restores", "orphan")[
        "status"
    ]
    assert status["validationErrors"] == [
        'Error retrieving backup: backups.velero.io "no-such-backup" not found'
    ]


# ------------------------------------------------------------------------------ kubectl
@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_kubectl_gets_and_scales_through_the_generated_kubeconfig(world, tmp_path):
    def kubectl(*args: str) -> str:
        done = subprocess.run(
            ["kubectl", "--kubeconfig", str(world.kubeconfig), "--context", "prod-usw2", *args],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "HOME": str(tmp_path)},  # its discovery cache goes here
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    table = kubectl("get", "deploy", "-n", NS).splitlines()
    assert table[0].split() == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
    assert table[2].split()[:4] == ["inference-service", "1/1", "1", "1"]
    assert "deployment.apps/inference-service scaled" in kubectl(
        "scale", "deploy/inference-service", "--replicas=3", "-n", NS
    )
    assert world.clusters["us-west-2"].deployment(NS, "inference-service")["spec"]["replicas"] == 3
    # rollout status watches the deployment until its pods are ready.
    assert 'deployment "inference-service" successfully rolled out' in kubectl(
        "rollout", "status", "deploy/inference-service", "-n", NS, "--timeout=30s"
    )
    assert world.clusters["us-west-2"].ready_replicas(NS, "inference-service") == 3
    assert (
        kubectl(
            "get", "deploy", "inference-service", "-n", NS, "-o", "jsonpath={.status.readyReplicas}"
        )
        == "3"
    )
    assert "ml-backup-daily" in kubectl("get", "backups.velero.io", "-n", "velero")


# ----------------------------------------------------------------------------- lifecycle
def test_stop_leaves_no_thread_and_frees_the_port():
    board = FaultBoard()
    cluster = KubeCluster("eu-test-1", board, speed=SPEED).start()
    url = cluster.url
    assert any(t.name.endswith("eu-test-1") for t in threading.enumerate())
    cluster.stop()
    cluster.stop()  # idempotent
    assert not any(t.name.endswith("eu-test-1") for t in threading.enumerate())
    port = int(url.rsplit(":", 1)[1])
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0

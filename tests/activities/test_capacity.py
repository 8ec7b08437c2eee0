"""kube.capacity: the arithmetic on its own, then the activity against the Kubernetes
emulator (real `kubernetes` client, real HTTPS), whose scheduler and Karpenter make each
finding happen for real: pods that do fit are bound, pods that do not stay Unschedulable."""

from __future__ import annotations

import pytest
from kubernetes import client as k8s

from activities.contracts import CapacityInput
from activities.kube import inventory
from activities.kube.activities import KubeActivities
from activities.kube.capacity import (
    Need,
    Room,
    autoscaler_headroom,
    fit,
    judge,
    nodepool_headroom,
    quantity,
    requests_of,
)
from drpilot.domain.loader import load_runbook
from tests.support.activities import run
from tests.support.paths import ROUTE53_RUNBOOK
from tests.support.twin import eventually

RUNBOOK = load_runbook(ROUTE53_RUNBOOK)
DR = "us-west-2"
GPU = "nvidia.com/gpu"


def node(name: str, gpus: int, labels: dict | None = None, taints: list | None = None) -> dict:
    room = {"cpu": "48", "memory": "192Gi", GPU: str(gpus), "pods": "110"}
    return {
        "metadata": {"name": name, "labels": labels or {}},
        "spec": {"taints": taints or []},
        "status": {"allocatable": room, "capacity": room},
    }


def pod_spec(gpus: int, **extra) -> dict:
    return {"containers": [{"name": "s", "resources": {"requests": {GPU: str(gpus), "cpu": "2"}}}], **extra}


# ------------------------------------------------------------------------- arithmetic
def test_a_pod_asking_two_gpus_does_not_fit_on_one_plus_one():
    rooms = [Room.of(node("a", 1)), Room.of(node("b", 1))]
    [w] = fit([Need("ml/llm", wanted=1, running=0, spec=pod_spec(2))], rooms, [])
    assert (w.fit_now, w.fit_after_scale_out) == (0, 0)
    result = judge(DR, [w], [], 2)
    assert result.verdict == "short"
    assert result.detail == "us-west-2 needs 1 pods of 2 nvidia.com/gpu (ml/llm): 0 fit now: short by 1 pods (2 nvidia.com/gpu)"
    # Two pods asking one each fit on the same two GPUs.
    [w] = fit([Need("ml/llm", wanted=2, running=0, spec=pod_spec(1))], [Room.of(node("a", 1)), Room.of(node("b", 1))], [])
    assert w.fit_now == 2


def test_selector_affinity_and_taints_decide_which_nodes_count():
    taint = {"key": GPU, "value": "present", "effect": "NoSchedule"}
    rooms = [Room.of(node("tainted", 8, {"pool": "gpu"}, [taint])), Room.of(node("cpu", 8, {"pool": "cpu"}))]
    spec = pod_spec(1, nodeSelector={"pool": "gpu"})
    assert fit([Need("ml/a", 1, 0, spec)], rooms, [])[0].fit_now == 0
    tolerant = {**spec, "tolerations": [{"key": GPU, "operator": "Exists", "effect": "NoSchedule"}]}
    assert fit([Need("ml/a", 3, 0, tolerant)], rooms, [])[0].fit_now == 3
    affinity = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": "pool", "operator": "NotIn", "values": ["gpu"]}]}]}}}
    assert fit([Need("ml/b", 9, 0, pod_spec(1, affinity=affinity))], rooms, [])[0].fit_now == 8


def test_requests_count_extended_resources_limits_and_init_containers():
    spec = {
        "containers": [{"resources": {"limits": {"amd.com/gpu": "2"}}}, {"resources": {"requests": {"cpu": "500m"}}}],
        "initContainers": [{"resources": {"requests": {"cpu": "2", "memory": "1Gi"}}}],
    }
    asked = requests_of(spec)
    assert asked["amd.com/gpu"] == 2 and asked["cpu"] == 2 and asked["memory"] == quantity("1Gi")


def test_nodepool_and_cluster_autoscaler_headroom_are_counted_apart():
    nodes = [node(f"n{i}", 4, {"karpenter.sh/nodepool": "gpu-a100", "eks.amazonaws.com/nodegroup": "ng-gpu"}) for i in range(2)]
    pool = {"metadata": {"name": "gpu-a100"}, "spec": {"limits": {GPU: "16"}, "template": {}}}
    head = nodepool_headroom(pool, nodes)
    assert head.nodes == 2 and head.said == "NodePool gpu-a100 may add 8 nvidia.com/gpu (limit 16)"
    full = [Room.of(n) for n in nodes]
    for room in full:
        room.take({GPU: quantity(4)})
    fits = fit([Need("ml/vllm", 6, 0, pod_spec(2))], full, [head])
    result = judge(DR, fits, [head], 2)
    assert result.verdict == "short"
    assert result.detail == (
        "us-west-2 needs 6 pods of 2 nvidia.com/gpu (ml/vllm): 0 fit now, NodePool gpu-a100 may add 8 nvidia.com/gpu "
        "(limit 16): short by 2 pods (4 nvidia.com/gpu)"
    )
    status = """Cluster-autoscaler status at 2026-12-07 06:00:00 +0000 UTC:
Cluster-wide:
  Health:      Healthy (ready=2 unready=0 notStarted=0 longNotStarted=0 registered=2 longUnregistered=0)

NodeGroups:
  Name:        ng-gpu
  Health:      Healthy (ready=2 unready=0 notStarted=0 longNotStarted=0 registered=2 longUnregistered=0 cloudProviderTarget=2 (minSize=1, maxSize=5))
"""
    [group] = autoscaler_headroom(status, nodes)
    assert group.nodes == 3 and group.said == "node group ng-gpu may add 3 node(s) of 4 nvidia.com/gpu"
    fits = fit([Need("ml/vllm", 6, 0, pod_spec(2))], [Room.of(n) for n in nodes], [group])
    assert judge(DR, fits, [group], 2).verdict == "fits after scale-out"  # 4 now, 2 on a new node


# ----------------------------------------------------------------- against the emulator
@pytest.fixture
def twin(kube_clusters):
    kube_clusters.activities = KubeActivities(kube_clusters.clients)
    return kube_clusters


def capacity(twin):
    return run(twin.activities.capacity, CapacityInput(runbook=RUNBOOK, region=DR))


def test_the_standby_region_fits_the_active_counts_by_default(twin):
    result = capacity(twin)
    assert result.verdict == "fits" and result.nodes == 4
    assert [(w.workload, w.wanted, w.running, w.fit_now) for w in result.workloads] == [
        ("ml-serving/inference-service", 6, 1, 5), ("ml-serving/inference-gateway", 3, 1, 2),
    ]
    assert result.workloads[0].per_pod == {"cpu": "4", "memory": "16Gi", GPU: "1"}


def test_a_region_short_of_gpus_says_by_how_much_and_the_scheduler_agrees(twin):
    twin.board.update(gpu_free={DR: 2})
    api = twin.clients[RUNBOOK.regions[DR].kube.context]
    eventually(lambda: k8s.CoreV1Api(api).list_namespaced_pod("research").items, what="the other team's pods")
    result = capacity(twin)
    assert result.verdict == "short"
    assert result.detail.endswith(": 2 fit now, NodePool gpu may add 0 nvidia.com/gpu (limit 16): short by 5 pods (5 nvidia.com/gpu)")
    # The emulator's scheduler, asked for the same pods, leaves exactly those Pending.
    k8s.AppsV1Api(api).patch_namespaced_deployment_scale("inference-service", "ml-serving", {"spec": {"replicas": 6}})
    k8s.AppsV1Api(api).patch_namespaced_deployment_scale("inference-gateway", "ml-serving", {"spec": {"replicas": 3}})

    def pending():
        pods = k8s.CoreV1Api(api).list_namespaced_pod("ml-serving").items
        return len(pods) == 9 and sum(1 for p in pods if not p.spec.node_name)

    assert eventually(pending, what="pods the scheduler could not place") == 5


def test_nodepool_headroom_makes_it_fit_after_scale_out_in_paginated_reads(twin, monkeypatch):
    twin.board.update(gpu_free={DR: 0})
    api = twin.clients[RUNBOOK.regions[DR].kube.context]
    k8s.CustomObjectsApi(api).patch_cluster_custom_object(
        "karpenter.sh", "v1", "nodepools", "gpu", {"spec": {"limits": {GPU: "24"}}}
    )
    monkeypatch.setattr(inventory, "PAGE", 2)
    result = capacity(twin)
    assert result.verdict == "fits after scale-out", result.detail
    assert "0 fit now, NodePool gpu may add 8 nvidia.com/gpu (limit 24): fits after scale-out" in result.detail
    # 4 nodes in pages of 2, the pods (ours and the other team's) in pages of 2, 2 Deployments,
    # the NodePools, the autoscaler's ConfigMap: lists, never one call per node.
    pods = len(k8s.CoreV1Api(api).list_pod_for_all_namespaces().items)
    assert pods == 6 and result.requests == 2 + 3 + 2 + 1 + 1


# ------------------------------------------------------------------------- cold start
def test_a_scale_up_measures_the_cold_start_of_the_pods_it_started(twin):
    from activities.contracts import ScaleInput

    # 3 s at speed 60, half pulling, half starting (conditions keep whole seconds, as the API does)
    twin.board.update(pod_start_seconds={DR: 180})
    result = run(twin.activities.scale, ScaleInput(runbook=RUNBOOK, region=DR, to="active", timeout_seconds=20, speed=60))
    cold = {c.workload: c for c in result.cold_start}
    assert [(w, c.pods) for w, c in cold.items()] == [("ml-serving/inference-service", 5), ("ml-serving/inference-gateway", 2)]
    for c in cold.values():
        # Scheduled at once, the image pulled half-way, ready after the whole start time.
        assert c.scheduled is not None and c.scheduled < 1.5
        assert c.pulled is not None and c.started is not None and c.ready is not None
        assert c.scheduled <= c.started <= c.ready and 1.0 <= c.pulled <= c.ready and 2.0 <= c.ready < 4.5, c


def test_cold_start_counts_only_the_new_pods_and_leaves_unseen_stages_empty():
    from activities.kube.cold_start import measure

    def pod(name: str, created: str, ready: str | None) -> dict:
        conditions = [{"type": "PodScheduled", "status": "True", "lastTransitionTime": created}]
        if ready:
            conditions.append({"type": "Ready", "status": "True", "lastTransitionTime": ready})
        return {"metadata": {"name": name, "creationTimestamp": created}, "status": {"conditions": conditions}}

    old = pod("old", "2026-12-01T09:00:00Z", "2026-12-01T09:01:00Z")
    new = pod("new", "2026-12-01T10:00:00Z", "2026-12-01T10:04:10Z")
    requested = 1796119200.0  # 2026-12-01T10:00:00Z
    pulled = {"involvedObject": {"name": "new"}, "reason": "Pulled", "eventTime": "2026-12-01T10:02:00.500000Z"}
    measured = measure("ml/vllm", requested, [old, new], [pulled])
    assert (measured.pods, measured.scheduled, measured.pulled, measured.started, measured.ready) == (1, 0.0, 120.5, None, 250.0)
    # Ready is stamped in whole seconds: in the second the image was pulled, it is not before the pull.
    late = {**pulled, "eventTime": "2026-12-01T10:04:10.400000Z"}
    assert measure("ml/vllm", requested, [old, new], [late]).ready == 250.4

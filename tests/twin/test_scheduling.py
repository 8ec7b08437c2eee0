"""Where the twin's pods run: one node each, where they fit, or Unschedulable in the
scheduler's words; Karpenter adding nodes within its NodePool's limits and the quota; the
kubelet's events and a missing image. Through the real `kubernetes` client."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import pytest
from drpilot_twin.faults import FaultBoard
from drpilot_twin.kube.api import start_kube_clusters, write_kubeconfig
from drpilot_twin.kube.scheduling import NodeRoom, place
from kubernetes import client as k8s
from kubernetes import config as k8s_config

from drpilot.domain.loader import load_runbook
from tests.support.paths import ROUTE53_RUNBOOK
from tests.support.twin import eventually

RUNBOOK = load_runbook(ROUTE53_RUNBOOK)
DR = "us-west-2"
NS = "ml-serving"
SPEED = 60.0


@pytest.fixture
def dr(tmp_path) -> Iterator[tuple[FaultBoard, k8s.ApiClient]]:
    board = FaultBoard()
    clusters = start_kube_clusters(RUNBOOK, board, speed=SPEED)
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", clusters)
    api = k8s_config.new_client_from_config(
        config_file=str(kubeconfig), context=RUNBOOK.regions[DR].kube.context, persist_config=False
    )
    yield board, api
    api.close()
    for cluster in clusters.values():
        cluster.stop()


def gpu_deployment(name: str, gpus: int, replicas: int = 1, image: str = "registry.example.com/llm:1") -> dict:
    return {
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "containers": [
                        {"name": "server", "image": image, "resources": {"limits": {"nvidia.com/gpu": str(gpus)}}}
                    ]
                },
            },
        },
    }


def pods_of(api: k8s.ApiClient, name: str) -> list[k8s.V1Pod]:
    return k8s.CoreV1Api(api).list_namespaced_pod(NS, label_selector=f"app={name}").items


def scheduled(pod: k8s.V1Pod) -> k8s.V1PodCondition:
    return {c.type: c for c in pod.status.conditions or []}["PodScheduled"]


def reasons(api: k8s.ApiClient, pod: k8s.V1Pod) -> list[str]:
    events = k8s.CoreV1Api(api).list_namespaced_event(NS).items
    return [e.reason for e in events if e.involved_object.name == pod.metadata.name]


def test_a_pod_asking_two_gpus_does_not_fit_on_two_nodes_with_one_free_each(dr):
    board, api = dr
    board.update(gpu_free={DR: 2})
    core = k8s.CoreV1Api(api)
    # Another team's pods hold the rest, one free GPU left on each of two nodes.
    eventually(lambda: core.list_namespaced_pod("research").items, what="the other team's pods")
    k8s.AppsV1Api(api).create_namespaced_deployment(NS, gpu_deployment("big", 2))
    pod = eventually(
        lambda: next((p for p in pods_of(api, "big") if p.status.conditions), None), what="the scheduler's verdict"
    )
    condition = scheduled(pod)
    assert (pod.status.phase, condition.status, condition.reason) == ("Pending", "False", "Unschedulable")
    assert condition.message == (
        "0/4 nodes are available: 4 Insufficient nvidia.com/gpu. preemption: 0/4 nodes are available: "
        "4 No preemption victims found for incoming pod."
    )
    assert "FailedScheduling" in reasons(api, pod)
    # The same two GPUs host two pods asking one each.
    k8s.AppsV1Api(api).create_namespaced_deployment(NS, gpu_deployment("small", 1, replicas=2))
    eventually(lambda: len([p for p in pods_of(api, "small") if p.status.phase == "Running"]) == 2, what="1+1 pods")
    nodes = {p.spec.node_name for p in pods_of(api, "small")}
    assert len(nodes) == 2


def test_a_nodepool_with_headroom_brings_a_node_after_its_provisioning_time(dr):
    board, api = dr
    board.update(gpu_free={DR: 0}, node_provision_seconds={DR: 60})  # 1 s at speed 60
    custom = k8s.CustomObjectsApi(api)
    k8s.AppsV1Api(api).create_namespaced_deployment(NS, gpu_deployment("grow", 2, replicas=2))
    pod = eventually(lambda: next((p for p in pods_of(api, "grow") if p.status.conditions), None))
    assert scheduled(pod).reason == "Unschedulable"
    # At its limit (16 GPUs = the 4 nodes there), the NodePool adds nothing.
    assert len(k8s.CoreV1Api(api).list_node().items) == 4
    custom.patch_cluster_custom_object("karpenter.sh", "v1", "nodepools", "gpu", {"spec": {"limits": {"nvidia.com/gpu": "20"}}})
    nodes = eventually(lambda: [n for n in k8s.CoreV1Api(api).list_node().items if n.metadata.name.startswith("gpu-")], timeout=15)
    assert nodes[0].status.allocatable["nvidia.com/gpu"] == "4"
    eventually(lambda: all(p.status.phase == "Running" for p in pods_of(api, "grow")), timeout=15, what="pods on the new node")
    first = pods_of(api, "grow")[0]
    seen = reasons(api, first)
    assert seen[:2] == ["FailedScheduling", "Nominated"]
    assert [r for r in seen if r not in ("FailedScheduling", "Nominated")] == ["Scheduled", "Pulling", "Pulled", "Created", "Started"]
    pool = custom.get_cluster_custom_object("karpenter.sh", "v1", "nodepools", "gpu")
    assert pool["status"]["resources"]["nvidia.com/gpu"] == "20" and pool["status"]["resources"]["nodes"] == "5"


def test_the_vcpu_quota_caps_what_karpenter_can_launch(dr):
    board, api = dr
    # 4 g5.12xlarge run 192 vCPUs: a quota of 200 leaves no room for a fifth.
    board.update(gpu_free={DR: 0}, node_provision_seconds={DR: 6}, quota={DR: 200})
    k8s.CustomObjectsApi(api).patch_cluster_custom_object(
        "karpenter.sh", "v1", "nodepools", "gpu", {"spec": {"limits": {"nvidia.com/gpu": "64"}}}
    )
    k8s.AppsV1Api(api).create_namespaced_deployment(NS, gpu_deployment("capped", 1))
    pod = eventually(lambda: next((p for p in pods_of(api, "capped") if p.status.conditions), None))
    assert scheduled(pod).reason == "Unschedulable"
    board.update(quota={DR: 240})
    eventually(lambda: pods_of(api, "capped")[0].status.phase == "Running", timeout=15, what="the node the raised quota allows")


def test_an_image_the_region_lacks_stays_in_err_image_pull(dr):
    board, api = dr
    board.update(image_missing={DR: "registry.example.com/llm:2"})
    k8s.AppsV1Api(api).create_namespaced_deployment(NS, gpu_deployment("pull", 1, image="registry.example.com/llm:2"))

    def waiting():
        pods = pods_of(api, "pull")
        statuses = pods[0].status.container_statuses if pods else None
        return statuses and statuses[0].state.waiting and statuses[0].state.waiting.reason == "ErrImagePull"

    eventually(waiting, what="ErrImagePull")
    assert "Failed" in reasons(api, pods_of(api, "pull")[0])
    board.update(image_missing={})
    eventually(lambda: pods_of(api, "pull")[0].status.phase == "Running", timeout=15, what="pull after the fix")


def room(name: str, gpus: int, labels: dict | None = None, taints: list | None = None) -> NodeRoom:
    free = {"nvidia.com/gpu": Decimal(gpus), "cpu": Decimal(8), "pods": Decimal(10)}
    return NodeRoom(name, labels or {}, taints or [], free)


def test_placement_honours_selector_affinity_and_taints():
    spec = {"containers": [{"resources": {"requests": {"nvidia.com/gpu": "1"}}}]}
    tainted = room("a", 4, labels={"pool": "gpu"}, taints=[{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}])
    other = room("b", 4, labels={"pool": "cpu"})
    node, message = place({**spec, "nodeSelector": {"pool": "gpu"}}, {"a": tainted, "b": other})
    assert node is None
    assert message.startswith(
        "0/2 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, "
        "1 node(s) had untolerated taint {nvidia.com/gpu: present}. preemption: 0/2 nodes are available: "
        "2 Preemption is not helpful for scheduling."
    )
    tolerant = {**spec, "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]}
    assert place(tolerant, {"a": tainted, "b": room("b", 0)})[0] == "a"
    affinity = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": "pool", "operator": "In", "values": ["cpu"]}]}
    ]}}}
    assert place({**spec, "affinity": affinity}, {"a": room("a", 4), "b": other})[0] == "b"
    # Bin packing: of two nodes that fit, the fuller one.
    assert place(spec, {"a": room("a", 4), "b": room("b", 2)})[0] == "b"


def test_an_image_pull_takes_time_by_its_size_and_the_kubelet_says_so(dr):
    board, api = dr
    board.update(pod_start_seconds={DR: 60})  # 1 s at speed 60, half of it the pull of a 10 GB image

    def pulled(name: str) -> str:
        eventually(lambda: pods_of(api, name)[0].status.phase == "Running", timeout=15, what=f"{name} running")
        events = k8s.CoreV1Api(api).list_namespaced_event(NS).items
        pod = pods_of(api, name)[0].metadata.name
        return next(e.message for e in events if e.involved_object.name == pod and e.reason == "Pulled")

    k8s.AppsV1Api(api).create_namespaced_deployment(NS, gpu_deployment("thin", 1))
    assert pulled("thin") == (
        'Successfully pulled image "registry.example.com/llm:1" in 500ms (500ms including waiting). '
        "Image size: 10000000000 bytes."
    )
    board.update(image_bytes={DR: 30_000_000_000})  # three times the bytes: three times the pull
    k8s.AppsV1Api(api).create_namespaced_deployment(NS, gpu_deployment("fat", 1, image="registry.example.com/llm:2"))
    assert pulled("fat") == (
        'Successfully pulled image "registry.example.com/llm:2" in 1.5s (1.5s including waiting). '
        "Image size: 30000000000 bytes."
    )

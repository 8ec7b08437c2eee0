"""Capacity readiness of a large region: `kube.capacity` against a twin cluster of
BENCH_CAPACITY_NODES g5.12xlarge nodes (default 500) holding BENCH_CAPACITY_PODS pods (default
2,000, in 20 namespaces: three of every four with one GPU, the rest cpu only), plus the
runbook's workloads. Time per check and the requests it makes: the lists are paginated
(500 a page), so requests grow with nodes / 500 and pods / 500, never one per node.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path

from drpilot_twin.faults import FaultBoard
from drpilot_twin.kube.api import KubeCluster, seed_kube_from_runbook, write_kubeconfig
from drpilot_twin.kube.objects import PODS
from drpilot_twin.kube.scheduling import GPU, NodeShape
from temporalio.testing import ActivityEnvironment

from activities.contracts import CapacityInput
from activities.kube.activities import KubeActivities
from activities.kube.clusters import KubeconfigClients
from drpilot.domain.loader import load_runbook

ROOT = Path(__file__).resolve().parent.parent
NODES = int(os.environ.get("BENCH_CAPACITY_NODES", "500"))
PODS_COUNT = int(os.environ.get("BENCH_CAPACITY_PODS", "2000"))
ROUNDS = int(os.environ.get("BENCH_CAPACITY_ROUNDS", "5"))
REGION = "us-west-2"

CAPACITY_HEADER = [
    "## Capacity readiness of a large region",
    "",
    f"`python -m bench.capacity` (also part of `make bench`): `kube.capacity` (the `{REGION}: capacity`",
    "readiness check and failover preflight's) against one twin cluster over HTTPS, outside Temporal.",
    "",
    "| what | result |",
    "| --- | --- |",
]
CAPACITY_NOTE = [
    "Nodes and pods are listed in pages of 500 (limit / continue) and read as JSON rather than",
    "through the client's model classes; the per-node arithmetic runs in memory. Requests are",
    "pages of nodes + pages of pods + one GET per workload + the NodePool list + the autoscaler",
    "ConfigMap: a constant per region size, never one call per node.",
]


def _crowd(cluster: KubeCluster) -> None:
    """PODS_COUNT pods bound to the nodes round-robin, as other teams' workloads."""
    nodes = sorted(cluster.store.objects[k]["metadata"]["name"] for k in cluster.store.objects if k[0] == "nodes")
    with cluster.store.lock:
        for ns in range(20):
            cluster.ensure_namespace(f"team-{ns}")
        for i in range(PODS_COUNT):
            asked = {GPU: "1", "cpu": "2"} if i % 4 else {"cpu": "1", "memory": "2Gi"}
            cluster.store.create(PODS, {
                "metadata": {"name": f"job-{i}", "namespace": f"team-{i % 20}", "labels": {"app": f"job-{i % 50}"}},
                "spec": {"nodeName": nodes[i % len(nodes)],
                         "containers": [{"name": "c", "image": "registry.example.com/job:1", "resources": {"requests": asked}}]},
                "status": {"phase": "Running"},
            })


def bench_capacity() -> list[str]:
    runbook = load_runbook(ROOT / "runbooks" / "llm-inference.yaml")
    cluster = KubeCluster(REGION, FaultBoard(), 60.0, context=runbook.regions[REGION].kube.context,
                          nodes=NodeShape(count=NODES))
    _crowd(cluster)
    seed_kube_from_runbook(cluster, runbook, REGION)
    cluster.start()
    try:
        with tempfile.TemporaryDirectory(prefix="drpilot-bench-capacity-") as tmp:
            kubeconfig = write_kubeconfig(Path(tmp) / "kubeconfig", [cluster])
            activities = KubeActivities(KubeconfigClients(str(kubeconfig)))
            env = ActivityEnvironment()
            times, result = [], None
            for _ in range(ROUNDS):
                start = time.perf_counter()
                result = env.run(activities.capacity, CapacityInput(runbook=runbook, region=REGION))
                times.append(time.perf_counter() - start)
    finally:
        cluster.stop()
    assert result is not None
    spread = f"median {statistics.median(times):.2f} s (min {min(times):.2f}, max {max(times):.2f}, n={len(times)})"
    return [
        f"| `kube.capacity`, {NODES} nodes, {PODS_COUNT} pods in 20 namespaces + the runbook's workloads | {spread}; "
        f"{result.requests} requests |",
        f"| its verdict | {result.verdict}: {result.detail} |",
    ]


if __name__ == "__main__":
    print("\n".join([*CAPACITY_HEADER, *bench_capacity(), "", *CAPACITY_NOTE]))

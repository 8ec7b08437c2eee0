"""Where the emulator's pods run: nodes, the scheduler's fit, Karpenter's NodePools.

A pod asks for resources (`spec.containers[].resources.requests`, extended resources such
as `nvidia.com/gpu` included) and is bound to ONE node whose allocatable minus the requests
of the pods already on it covers them, whose labels its nodeSelector and required node
affinity accept and whose NoSchedule / NoExecute taints it tolerates
(kubernetes.io/docs/concepts/scheduling-eviction/: "Resource Management for Pods and
Containers", "Assigning Pods to Nodes", "Taints and Tolerations"). A pod that fits nowhere
stays Pending with PodScheduled=False / Unschedulable and the scheduler's message, counted
per reason ("0/4 nodes are available: 4 Insufficient nvidia.com/gpu. preemption: ...").

Karpenter (karpenter.sh/v1 NodePool) answers such pods with a node of its template's
instance type, launched after `node_provision_seconds`, while the NodePool's total stays
within `spec.limits` (karpenter.sh/docs/concepts/nodepools/#speclimits) and the account's
vCPU quota for the instance family allows it (EC2 answers VcpuLimitExceeded otherwise).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from kubernetes.utils.quantity import parse_quantity

from drpilot_twin.kube.objects import NAMESPACES, NODEPOOLS, NODES, PODS, Obj, Store, timestamp

GPU = "nvidia.com/gpu"
INSTANCE_TYPE = "node.kubernetes.io/instance-type"
NODEPOOL_LABEL = "karpenter.sh/nodepool"
# What EC2 GPU instances offer, per the EC2 instance-type pages (Accelerated Computing), and
# what the kubelet leaves allocatable after its reservations (EKS AMI defaults, rounded).
INSTANCE_TYPES: dict[str, dict[str, str]] = {
    "g5.xlarge": {"cpu": "3920m", "memory": "14Gi", GPU: "1", "pods": "58"},
    "g5.12xlarge": {"cpu": "47810m", "memory": "180Gi", GPU: "4", "pods": "234"},
    "p4d.24xlarge": {"cpu": "95690m", "memory": "1100Gi", GPU: "8", "pods": "737"},
}
VCPUS = {"g5.xlarge": 4, "g5.12xlarge": 48, "p4d.24xlarge": 96}


def quantity(value: Any) -> Decimal:
    return parse_quantity(value if isinstance(value, str) else str(value))


def pod_requests(spec: Obj) -> dict[str, Decimal]:
    """What the scheduler reserves for a pod: the sum of its containers' requests (limits
    stand in where only a limit is set, as the API server defaults them), and one pod."""
    total: Counter[str] = Counter()
    for container in spec.get("containers") or []:
        resources = container.get("resources") or {}
        asked = {**(resources.get("limits") or {}), **(resources.get("requests") or {})}
        for name, value in asked.items():
            total[name] += quantity(value)
    total["pods"] += 1
    return dict(total)


def _matches(expr: Obj, labels: dict[str, str]) -> bool:
    key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
    if op == "In":
        return labels.get(key) in values
    if op == "NotIn":
        return labels.get(key) not in values
    if op == "Exists":
        return key in labels
    if op == "DoesNotExist":
        return key not in labels
    if op in ("Gt", "Lt") and key in labels and values:
        have, want = int(labels[key]), int(values[0])
        return have > want if op == "Gt" else have < want
    return False


def selects(spec: Obj, labels: dict[str, str]) -> bool:
    """nodeSelector and requiredDuringScheduling node affinity (terms ORed, expressions ANDed)."""
    if any(labels.get(k) != v for k, v in (spec.get("nodeSelector") or {}).items()):
        return False
    required = (
        ((spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
            "requiredDuringSchedulingIgnoredDuringExecution"
        )
        or {}
    )
    terms = required.get("nodeSelectorTerms") or []
    return not terms or any(
        all(_matches(e, labels) for e in term.get("matchExpressions") or []) for term in terms
    )


def untolerated(spec: Obj, taints: list[Obj]) -> Obj | None:
    for taint in taints:
        if taint.get("effect") not in ("NoSchedule", "NoExecute"):
            continue
        if not any(_tolerates(t, taint) for t in spec.get("tolerations") or []):
            return taint
    return None


def _tolerates(toleration: Obj, taint: Obj) -> bool:
    if toleration.get("effect") and toleration["effect"] != taint.get("effect"):
        return False
    if not toleration.get("key"):
        return toleration.get("operator") == "Exists"
    if toleration["key"] != taint.get("key"):
        return False
    if toleration.get("operator") == "Exists":
        return True
    return toleration.get("value", "") == taint.get("value", "")


@dataclass
class NodeRoom:
    """A node as the scheduler sees it: labels, taints, and what is left of its allocatable."""

    name: str
    labels: dict[str, str]
    taints: list[Obj]
    free: dict[str, Decimal]
    cordoned: bool = False

    def refusal(self, spec: Obj, asked: dict[str, Decimal]) -> list[str]:
        """The scheduler's reasons this node cannot take the pod (empty: it fits)."""
        if self.cordoned:
            return ["node(s) were unschedulable"]
        # The default profile's filter order: TaintToleration, then NodeAffinity, then fit;
        # a node reports the first filter that rejects it.
        taint = untolerated(spec, self.taints)
        if taint is not None:
            shown = f"{taint.get('key')}: {taint.get('value')}" if taint.get("value") else taint.get("key")
            return [f"node(s) had untolerated taint {{{shown}}}"]
        if not selects(spec, self.labels):
            return ["node(s) didn't match Pod's node affinity/selector"]
        reasons = []
        for name, amount in sorted(asked.items()):
            if amount > self.free.get(name, Decimal(0)):
                reasons.append("Too many pods" if name == "pods" else f"Insufficient {name}")
        return reasons

    def take(self, asked: dict[str, Decimal]) -> None:
        for name, amount in asked.items():
            self.free[name] = self.free.get(name, Decimal(0)) - amount


def rooms(store: Store) -> dict[str, NodeRoom]:
    """Every node with its allocatable minus the requests of the pods bound to it."""
    out = {}
    for node in store.items(NODES):
        allocatable = (node.get("status") or {}).get("allocatable") or {}
        out[node["metadata"]["name"]] = NodeRoom(
            name=node["metadata"]["name"],
            labels=dict(node["metadata"].get("labels") or {}),
            taints=list((node.get("spec") or {}).get("taints") or []),
            free={k: quantity(v) for k, v in allocatable.items()},
            cordoned=bool((node.get("spec") or {}).get("unschedulable")),
        )
    for pod in store.items(PODS):
        node_name = (pod.get("spec") or {}).get("nodeName")
        if node_name in out and (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed"):
            out[node_name].take(pod_requests(pod.get("spec") or {}))
    return out


def place(spec: Obj, nodes: dict[str, NodeRoom]) -> tuple[str | None, str]:
    """(the node the pod goes to, "") or (None, the scheduler's FailedScheduling message).

    Among nodes that fit, the one with the least of the pod's first extended resource left
    (bin packing, as GPU clusters configure the MostAllocated scoring strategy), then by name.
    """
    asked = pod_requests(spec)
    fitting, reasons = [], Counter()
    resolvable = 0  # nodes a preemption could help on (they lack resources, nothing else)
    for room in nodes.values():
        refused = room.refusal(spec, asked)
        if not refused:
            fitting.append(room)
        for reason in refused:
            reasons[reason] += 1
        if refused and all(r.startswith("Insufficient") or r == "Too many pods" for r in refused):
            resolvable += 1
    if fitting:
        scarce = next((n for n in sorted(asked) if "/" in n), "cpu")
        best = min(fitting, key=lambda r: (r.free.get(scarce, Decimal(0)), r.name))
        best.take(asked)
        return best.name, ""
    return None, unschedulable_message(len(nodes), reasons, resolvable)


def unschedulable_message(total: int, reasons: Counter[str], resolvable: int) -> str:
    """kube-scheduler's FitError text (pkg/scheduler/schedule_one.go), reasons sorted."""
    if total == 0:
        return "no nodes available to schedule pods"
    shown = ", ".join(f"{n} {r}" for r, n in sorted(reasons.items(), key=lambda x: x[0]))
    parts = []
    if resolvable:
        parts.append(f"{resolvable} No preemption victims found for incoming pod")
    if total - resolvable:
        parts.append(f"{total - resolvable} Preemption is not helpful for scheduling")
    return (
        f"0/{total} nodes are available: {shown}. preemption: 0/{total} nodes are available: "
        f"{', '.join(parts)}."
    )


# ---------------------------------------------------------------------------------- nodes
@dataclass(frozen=True)
class NodeShape:
    """The nodes a sandbox region starts with and its GPU NodePool (the sandbox's options).

    The default fits the example runbooks: 4 g5.12xlarge (16 GPUs) hold the 9 one-GPU pods
    of llm-inference's active counts, and the NodePool is at its limit (no headroom) until
    someone raises `spec.limits`."""

    count: int = 4
    instance_type: str = "g5.12xlarge"
    labels: dict[str, str] = field(default_factory=dict)
    taints: tuple[Obj, ...] = ()
    nodepool: str = "gpu"
    nodepool_gpu_limit: int | None = None  # None: exactly the starting nodes' GPUs


def node_object(region: str, name: str, instance_type: str, labels: dict[str, str], taints: list[Obj]) -> Obj:
    allocatable = dict(INSTANCE_TYPES[instance_type])
    return {
        "metadata": {
            "name": name,
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                INSTANCE_TYPE: instance_type,
                "topology.kubernetes.io/region": region,
                "topology.kubernetes.io/zone": f"{region}a",
                "nvidia.com/gpu.present": "true",
                **labels,
            },
        },
        "spec": {"taints": list(taints)} if taints else {},
        "status": {
            "capacity": allocatable,
            "allocatable": allocatable,
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "reason": "KubeletReady",
                    "message": "kubelet is posting ready status",
                    "lastTransitionTime": timestamp(),
                }
            ],
        },
    }


def seed_nodes(store: Store, region: str, shape: NodeShape) -> None:
    labels = {NODEPOOL_LABEL: shape.nodepool, **shape.labels}
    for i in range(shape.count):
        name = f"ip-10-0-{i // 250}-{i % 250 + 10}.{region}.compute.internal"
        store.create(NODES, node_object(region, name, shape.instance_type, labels, list(shape.taints)))
    gpus = int(INSTANCE_TYPES[shape.instance_type][GPU])
    limit = shape.nodepool_gpu_limit if shape.nodepool_gpu_limit is not None else gpus * shape.count
    store.create(
        NODEPOOLS,
        {
            "metadata": {"name": shape.nodepool},
            "spec": {
                "template": {
                    "metadata": {"labels": dict(shape.labels)},
                    "spec": {
                        "requirements": [
                            {"key": INSTANCE_TYPE, "operator": "In", "values": [shape.instance_type]}
                        ],
                        "taints": list(shape.taints),
                        "nodeClassRef": {"group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": "default"},
                    },
                },
                "limits": {GPU: str(limit)},
            },
        },
    )


# ---------------------------------------------------------------------- other tenants' GPUs
TENANT_NAMESPACE = "research"
TENANT_LABELS = {"app": "batch-training", "app.kubernetes.io/managed-by": "research-queue"}


def reserve_gpus(store: Store, free: int | None) -> None:
    """Make `free` GPUs the region's free ones now, the rest taken by another team's
    training pods (what `gpu_free.REGION=N` shows); None gives them all back.

    The free GPUs are spread one per node in turn, as a busy shared cluster leaves them
    (fragmented: two free GPUs on two nodes do not host a pod asking for two)."""
    for pod in list(store.items(PODS, TENANT_NAMESPACE)):
        store.delete(PODS, TENANT_NAMESPACE, pod["metadata"]["name"])
    if free is None:
        return
    gpu_rooms = [r for r in rooms(store).values() if r.free.get(GPU, Decimal(0)) > 0]
    gpu_rooms.sort(key=lambda r: r.name)
    keep = {r.name: 0 for r in gpu_rooms}
    left = max(0, free)
    while left > 0 and any(keep[r.name] < r.free[GPU] for r in gpu_rooms):
        for room in gpu_rooms:
            if left > 0 and keep[room.name] < room.free[GPU]:
                keep[room.name] += 1
                left -= 1
    if store.get(NAMESPACES, "", TENANT_NAMESPACE) is None:
        store.create(
            NAMESPACES,
            {
                "metadata": {"name": TENANT_NAMESPACE, "labels": {"kubernetes.io/metadata.name": TENANT_NAMESPACE}},
                "spec": {"finalizers": ["kubernetes"]},
                "status": {"phase": "Active"},
            },
        )
    for index, room in enumerate(gpu_rooms):
        taken = int(room.free[GPU]) - keep[room.name]
        if taken <= 0:
            continue
        store.create(
            PODS,
            {
                "metadata": {
                    "name": f"training-{index}",
                    "namespace": TENANT_NAMESPACE,
                    "labels": dict(TENANT_LABELS),
                },
                "spec": {
                    "nodeName": room.name,
                    "containers": [
                        {
                            "name": "trainer",
                            "image": "registry.example.com/research/trainer:2026.11",
                            "resources": {"requests": {GPU: str(taken)}, "limits": {GPU: str(taken)}},
                        }
                    ],
                },
                "status": {"phase": "Running", "qosClass": "BestEffort", "startTime": timestamp()},
            },
        )

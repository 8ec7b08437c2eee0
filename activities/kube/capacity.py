"""Will a region's cluster hold the pods a run asks for? The arithmetic, apart from the reads.

A pod needs the sum of its containers' requests (or the largest init container's, if more:
init containers run one at a time before the others), extended resources such as
`nvidia.com/gpu` and `amd.com/gpu` included, and must fit on ONE node: four free GPUs spread
1+1+1+1 do not host a pod asking for two. A node's room is its allocatable minus the
requests of every pod bound to it; the pod may go only where its nodeSelector and required
node affinity allow and whose NoSchedule / NoExecute taints it tolerates (the scheduler's
own filters, kubernetes.io/docs/concepts/scheduling-eviction/). What an autoscaler may add
(a Karpenter NodePool up to `spec.limits`, a Cluster Autoscaler node group up to its
maxSize) is counted apart from what is there now, in nodes shaped like the ones it already
runs.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from kubernetes.utils.quantity import parse_quantity

from activities.contracts import CapacityResult, WorkloadCapacity

Obj = dict[str, Any]
NODEPOOL_LABEL = "karpenter.sh/nodepool"
INSTANCE_TYPE = "node.kubernetes.io/instance-type"
ZERO = Decimal(0)


def quantity(value: Any) -> Decimal:
    return parse_quantity(str(value))


def requests_of(spec: Obj) -> dict[str, Decimal]:
    """What the scheduler reserves for one pod (a limit stands for a missing request)."""

    def asked(container: Obj) -> dict[str, Decimal]:
        res = container.get("resources") or {}
        merged = {**(res.get("limits") or {}), **(res.get("requests") or {})}
        return {name: quantity(value) for name, value in merged.items()}

    total: dict[str, Decimal] = {}
    for container in spec.get("containers") or []:
        for name, amount in asked(container).items():
            total[name] = total.get(name, ZERO) + amount
    for container in spec.get("initContainers") or []:
        for name, amount in asked(container).items():
            total[name] = max(total.get(name, ZERO), amount)
    total["pods"] = Decimal(1)
    return total


def main_resource(per_pod: dict[str, Decimal]) -> str:
    """The resource a pod is counted in: its accelerator (an extended resource), else cpu."""
    extended = sorted(n for n, v in per_pod.items() if "/" in n and v > 0)
    return extended[0] if extended else "cpu"


def shown(amount: Decimal, name: str = "") -> str:
    """A quantity as kubectl would write it (memory in Gi / Mi where it divides evenly)."""
    if name == "memory" or name.startswith(("hugepages-", "ephemeral-storage")):
        for unit, size in (("Gi", 1024**3), ("Mi", 1024**2)):
            if amount and amount % size == 0:
                return f"{int(amount / size)}{unit}"
    return str(int(amount)) if amount == amount.to_integral_value() else f"{int(amount * 1000)}m"


# ---------------------------------------------------------------------------------- nodes
@dataclass
class Room:
    """A node (or one an autoscaler may add): labels, taints, what is left of allocatable."""

    name: str
    labels: dict[str, str]
    taints: list[Obj]
    free: dict[str, Decimal]
    cordoned: bool = False

    @classmethod
    def of(cls, node: Obj, name: str | None = None) -> Room:
        status = node.get("status") or {}
        return cls(
            name=name or node["metadata"]["name"],
            labels=dict(node["metadata"].get("labels") or {}),
            taints=list((node.get("spec") or {}).get("taints") or []),
            free={k: quantity(v) for k, v in (status.get("allocatable") or {}).items()},
            cordoned=bool((node.get("spec") or {}).get("unschedulable")),
        )

    def accepts(self, spec: Obj, asked: dict[str, Decimal]) -> bool:
        return (
            not self.cordoned
            and tolerated(spec, self.taints)
            and allowed(spec, self.labels)
            and all(amount <= self.free.get(name, ZERO) for name, amount in asked.items() if amount > 0)
        )

    def take(self, asked: dict[str, Decimal]) -> None:
        for name, amount in asked.items():
            self.free[name] = self.free.get(name, ZERO) - amount


def _term_holds(expr: Obj, labels: dict[str, str]) -> bool:
    key, op, values = expr.get("key", ""), expr.get("operator"), expr.get("values") or []
    present = key in labels
    tests = {
        "In": lambda: present and labels[key] in values,
        "NotIn": lambda: not present or labels[key] not in values,
        "Exists": lambda: present,
        "DoesNotExist": lambda: not present,
        "Gt": lambda: present and bool(values) and int(labels[key]) > int(values[0]),
        "Lt": lambda: present and bool(values) and int(labels[key]) < int(values[0]),
    }
    return tests.get(op, lambda: False)()


def allowed(spec: Obj, labels: dict[str, str]) -> bool:
    """nodeSelector, and required node affinity: any term whose expressions all hold."""
    for key, value in (spec.get("nodeSelector") or {}).items():
        if labels.get(key) != value:
            return False
    node_affinity = (spec.get("affinity") or {}).get("nodeAffinity") or {}
    required = node_affinity.get("requiredDuringSchedulingIgnoredDuringExecution") or {}
    terms = required.get("nodeSelectorTerms") or []
    if not terms:
        return True
    return any(all(_term_holds(e, labels) for e in t.get("matchExpressions") or []) for t in terms)


def tolerated(spec: Obj, taints: Iterable[Obj]) -> bool:
    tolerations = spec.get("tolerations") or []

    def covers(tol: Obj, taint: Obj) -> bool:
        if tol.get("effect") not in (None, "", taint.get("effect")):
            return False
        if tol.get("operator") == "Exists":
            return tol.get("key") in (None, "", taint.get("key"))
        return tol.get("key") == taint.get("key") and tol.get("value", "") == taint.get("value", "")

    return all(
        any(covers(tol, taint) for tol in tolerations)
        for taint in taints
        if taint.get("effect") in ("NoSchedule", "NoExecute")
    )


def rooms_now(nodes: list[Obj], pods: list[Obj]) -> list[Room]:
    """Every node's room: allocatable minus the requests of the pods bound to it."""
    rooms = {n["metadata"]["name"]: Room.of(n) for n in nodes}
    for pod in pods:
        node = (pod.get("spec") or {}).get("nodeName")
        if node in rooms and (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed"):
            rooms[node].take(requests_of(pod.get("spec") or {}))
    return list(rooms.values())


# ------------------------------------------------------------------------------ headroom
@dataclass
class Headroom:
    """Nodes an autoscaler may still add, shaped like `shape` (None: no bound)."""

    source: str  # "NodePool gpu", "node group ng-gpu"
    shape: Room
    nodes: int | None
    said: str  # "NodePool gpu may add 8 nvidia.com/gpu (limit 16)"
    added: list[Room] = field(default_factory=list)  # the nodes the fit needed of it
    vcpus: int = 0  # of each node (what it holds of the account's vCPU quota)

    def room(self, index: int) -> Room | None:
        if self.nodes is not None and index >= self.nodes:
            return None
        while len(self.added) <= index:
            self.added.append(Room(f"{self.source} #{len(self.added) + 1}", dict(self.shape.labels),
                                   list(self.shape.taints), dict(self.shape.free)))
        return self.added[index]


def nodepool_headroom(pool: Obj, nodes: list[Obj]) -> Headroom | str:
    """A Karpenter NodePool's headroom, or why it cannot be counted.

    Karpenter stops launching once the NodePool's nodes' capacity would pass `spec.limits`
    (karpenter.sh/docs/concepts/nodepools/#speclimits); a node it adds is taken to be shaped
    like the NodePool's own nodes (or, before it has any, like a node of an instance type its
    requirements name)."""
    name = pool["metadata"]["name"]
    spec = pool.get("spec") or {}
    template = spec.get("template") or {}
    mine = [n for n in nodes if (n["metadata"].get("labels") or {}).get(NODEPOOL_LABEL) == name]
    types = next(
        (r.get("values") or [] for r in (template.get("spec") or {}).get("requirements") or []
         if r.get("key") == INSTANCE_TYPE and r.get("operator") == "In"),
        [],
    )
    model = mine[0] if mine else next(
        (n for n in nodes if (n["metadata"].get("labels") or {}).get(INSTANCE_TYPE) in types), None
    )
    if model is None:
        return f"NodePool {name}: no node of its shape to count by, headroom not counted"
    shape = Room.of(model, name=f"NodePool {name}")
    shape.labels.update((template.get("metadata") or {}).get("labels") or {})
    shape.labels[NODEPOOL_LABEL] = name
    shape.taints = list((template.get("spec") or {}).get("taints") or [])
    capacity = {k: quantity(v) for k, v in ((model.get("status") or {}).get("capacity") or {}).items()}
    used: dict[str, Decimal] = {}
    for node in mine:
        for key, value in ((node.get("status") or {}).get("capacity") or {}).items():
            used[key] = used.get(key, ZERO) + quantity(value)
    limits = {k: quantity(v) for k, v in (spec.get("limits") or {}).items()}
    if not limits:
        return Headroom(f"NodePool {name}", shape, None, f"NodePool {name} may add nodes (no limits)",
                        vcpus=int(capacity.get("cpu", ZERO)))
    counts = []
    for key, limit in limits.items():
        per_node = capacity.get(key, ZERO)
        if per_node > 0:
            counts.append(max(0, math.floor((limit - used.get(key, ZERO)) / per_node)))
    count = min(counts) if counts else 0
    unit = main_resource(capacity)
    limit_of = limits.get(unit)
    said = f"NodePool {name} may add {shown(count * capacity.get(unit, ZERO))} {unit}" + (
        f" (limit {shown(limit_of)})" if limit_of is not None else f" ({count} node(s))"
    )
    return Headroom(f"NodePool {name}", shape, count, said, vcpus=int(capacity.get("cpu", ZERO)))


_GROUP = re.compile(r"Name:\s*(?P<name>\S+).*?cloudProviderTarget=(?P<target>\d+)\s*\(minSize=\d+,\s*maxSize=(?P<max>\d+)\)", re.S)
NODEGROUP_LABELS = ("eks.amazonaws.com/nodegroup", "cloud.google.com/gke-nodepool", "alpha.eksctl.io/nodegroup-name")


def autoscaler_headroom(status: str, nodes: list[Obj]) -> list[Headroom | str]:
    """Node groups' headroom from the Cluster Autoscaler's status ConfigMap (kube-system/
    cluster-autoscaler-status, key `status`): maxSize minus its current target, in nodes
    shaped like the group's own (found by the node-group label EKS / GKE put on them)."""
    out: list[Headroom | str] = []
    for block in re.split(r"\n\s*\n", status):
        m = _GROUP.search(block)
        if not m:
            continue
        name, room = m["name"], int(m["max"]) - int(m["target"])
        model = next(
            (n for n in nodes if name in {(n["metadata"].get("labels") or {}).get(k) for k in NODEGROUP_LABELS}), None
        )
        if model is None:
            out.append(f"node group {name}: no node of its shape to count by, headroom not counted")
            continue
        shape = Room.of(model, name=f"node group {name}")
        unit = main_resource(shape.free)
        vcpus = int(quantity(((model.get("status") or {}).get("capacity") or {}).get("cpu", "0")))
        out.append(Headroom(f"node group {name}", shape, max(0, room),
                            f"node group {name} may add {max(0, room)} node(s) of {shown(shape.free.get(unit, ZERO))} {unit}",
                            vcpus=vcpus))
    return out


# ------------------------------------------------------------------------------------ fit
@dataclass(frozen=True)
class Need:
    workload: str  # namespace/deployment
    wanted: int
    running: int
    spec: Obj  # the pod template's spec


def _first_fit(spec: Obj, asked: dict[str, Decimal], rooms: list[Room]) -> Room | None:
    """The fullest room that takes the pod (bin packing, as GPU clusters score nodes)."""
    unit = main_resource(asked)
    fitting = [r for r in rooms if r.accepts(spec, asked)]
    return min(fitting, key=lambda r: (r.free.get(unit, ZERO), r.name), default=None)


def fit(needs: list[Need], rooms: list[Room], headroom: list[Headroom]) -> list[WorkloadCapacity]:
    """Place each workload's missing pods on the rooms there now, then on what the autoscalers
    may add; the largest pods first, as they are the hardest to place."""
    order = sorted(needs, key=lambda n: -requests_of(n.spec).get(main_resource(requests_of(n.spec)), ZERO))
    out: dict[str, WorkloadCapacity] = {}
    for need in order:
        asked = requests_of(need.spec)
        now = later = 0
        for _ in range(max(0, need.wanted - need.running)):
            room = _first_fit(need.spec, asked, rooms)
            if room is not None:
                room.take(asked)
                now += 1
                continue
            room = _grow(need.spec, asked, headroom)
            if room is None:
                continue
            room.take(asked)
            later += 1
        out[need.workload] = WorkloadCapacity(
            workload=need.workload, wanted=need.wanted, running=need.running,
            per_pod={k: shown(v, k) for k, v in sorted(asked.items()) if k != "pods" and v > 0},
            fit_now=now, fit_after_scale_out=now + later,
        )
    return [out[n.workload] for n in needs]


def _grow(spec: Obj, asked: dict[str, Decimal], headroom: list[Headroom]) -> Room | None:
    for head in headroom:
        if not head.shape.accepts(spec, asked):
            continue  # even an empty node of this shape does not take the pod
        index = 0
        while (room := head.room(index)) is not None:
            if room.accepts(spec, asked):
                return room
            index += 1
    return None


def judge(region: str, fits: list[WorkloadCapacity], headroom: list[Headroom | str], nodes: int) -> CapacityResult:
    """The verdict and its sentence, e.g. "us-west-2 needs 6 pods of 2 nvidia.com/gpu
    (ml-serving/vllm): 2 fit now, NodePool gpu may add 8 nvidia.com/gpu (limit 16): fits after scale-out"."""
    said = [h.said if isinstance(h, Headroom) else h for h in headroom]
    adding = [w for w in fits if w.adding]
    if not adding:
        running = ", ".join(f"{w.workload} {w.running}/{w.wanted}" for w in fits)
        return CapacityResult(region=region, verdict="fits", detail=f"nothing to add: {running or 'no workloads'}",
                              workloads=fits, headroom=said, nodes=nodes)

    def per_pod(w: WorkloadCapacity) -> str:
        unit = main_resource({k: quantity(v) for k, v in w.per_pod.items()})
        return f"{w.per_pod.get(unit, '0')} {unit}"

    needs = " and ".join(f"{w.adding} pods of {per_pod(w)} ({w.workload})" for w in adding)
    text = f"{region} needs {needs}: {sum(w.fit_now for w in adding)} fit now"
    if said:
        text += ", " + "; ".join(said)
    short = [w for w in adding if w.fit_after_scale_out < w.adding]
    if not short:
        later = any(w.fit_now < w.adding for w in adding)
        verdict = "fits after scale-out" if later else "fits"
        return CapacityResult(region=region, verdict=verdict, detail=f"{text}: {verdict}", workloads=fits,
                              headroom=said, nodes=nodes)
    missing = sum(w.adding - w.fit_after_scale_out for w in short)
    totals: dict[str, Decimal] = {}
    for w in short:
        unit = main_resource({k: quantity(v) for k, v in w.per_pod.items()})
        totals[unit] = totals.get(unit, ZERO) + quantity(w.per_pod.get(unit, "0")) * (w.adding - w.fit_after_scale_out)
    amounts = ", ".join(f"{shown(v)} {k}" for k, v in totals.items())
    return CapacityResult(region=region, verdict="short", detail=f"{text}: short by {missing} pods ({amounts})",
                          workloads=fits, headroom=said, nodes=nodes)


def instance_vcpus(nodes: list[Obj], headroom: list[Headroom]) -> tuple[dict[str, list[int]], dict[str, int]]:
    """(instance type -> [nodes the fit would start, vCPUs each], instance type -> vCPUs running
    now): what the account's EC2 vCPU quotas are held against."""
    running: dict[str, int] = {}
    for node in nodes:
        kind = (node["metadata"].get("labels") or {}).get(INSTANCE_TYPE, "unknown")
        cpu = ((node.get("status") or {}).get("capacity") or {}).get("cpu", "0")
        running[kind] = running.get(kind, 0) + int(quantity(cpu))
    starting: dict[str, list[int]] = {}
    for head in headroom:
        if head.added:
            kind = head.shape.labels.get(INSTANCE_TYPE, "unknown")
            count = starting.get(kind, [0, head.vcpus])[0] + len(head.added)
            starting[kind] = [count, head.vcpus]
    return starting, running

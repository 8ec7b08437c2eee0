"""Karpenter in the emulator: nodes for the pods the scheduler could not place.

Karpenter watches Unschedulable pods, picks a NodePool whose template the pod accepts,
launches an instance of the template's type (a NodeClaim) and the node registers a few
minutes later (karpenter.sh/docs/concepts/: "NodePools", "Scheduling", "Disruption").
It launches only while the NodePool's resources stay within `spec.limits`, and EC2 starts
the instance only within the account's vCPU quota for its family (Service Quotas,
"Running On-Demand G and VT instances" / "... P instances"; EC2 answers VcpuLimitExceeded).
Launch time is `node_provision_seconds` (simulated, divided by the speed).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from drpilot_twin.faults import DEFAULT_GPU_VCPU_QUOTA, FaultBoard
from drpilot_twin.kube.objects import NODEPOOLS, NODES, Obj, Store
from drpilot_twin.kube.scheduling import (
    INSTANCE_TYPE,
    INSTANCE_TYPES,
    NODEPOOL_LABEL,
    VCPUS,
    NodeRoom,
    node_object,
    pod_requests,
    quantity,
)

# A GPU node (launch, boot, join, device plugin ready) takes minutes on EKS.
DEFAULT_NODE_PROVISION_SECONDS = 120.0


@dataclass
class _Launch:
    nodepool: str
    name: str
    instance_type: str
    due: float
    room: NodeRoom  # what the pods nominated to it will use


class Karpenter:
    def __init__(self, store: Store, board: FaultBoard, region: str, speed: float, events):
        self.store, self.board, self.region, self.speed = store, board, region, speed
        self.events = events  # (pod, reason, message, component): writes a pod's Event
        self._launches: dict[str, _Launch] = {}
        self._nominated: dict[str, str] = {}  # pod uid -> launch name
        self._serial = 0

    def provision_seconds(self) -> float:
        seconds = self.board.now.node_provision_seconds.get(self.region, DEFAULT_NODE_PROVISION_SECONDS)
        return max(0.0, seconds) / self.speed

    def quota_vcpus(self) -> int:
        return int(self.board.now.quota.get(self.region, DEFAULT_GPU_VCPU_QUOTA))

    def reconcile(self, pending: list[Obj], now: float) -> float | None:
        """Register due nodes, launch for pods nothing holds; the next time worth waking at."""
        for name, launch in list(self._launches.items()):
            if launch.due <= now:
                self._register(launch)
                del self._launches[name]
        for pod in pending:
            uid = pod["metadata"]["uid"]
            if self._nominated.get(uid) in self._launches:
                continue
            launch = self._nominate(pod, now)
            if launch is not None:
                self._nominated[uid] = launch.name
                self.events(pod, "Nominated", f"Pod should schedule on: nodeclaim/{launch.name}", "karpenter")
        self._write_status()
        return min((launch.due for launch in self._launches.values()), default=None)

    # ------------------------------------------------------------------ pieces
    def _nominate(self, pod: Obj, now: float) -> _Launch | None:
        spec = pod.get("spec") or {}
        asked = pod_requests(spec)
        for launch in self._launches.values():
            if not launch.room.refusal(spec, asked):
                launch.room.take(asked)
                return launch
        for pool in self.store.items(NODEPOOLS):
            template = (pool.get("spec") or {}).get("template") or {}
            labels = {**((template.get("metadata") or {}).get("labels") or {}), NODEPOOL_LABEL: pool["metadata"]["name"]}
            taints = list((template.get("spec") or {}).get("taints") or [])
            for instance_type in self._instance_types(template):
                node = node_object(self.region, "candidate", instance_type, labels, taints)
                room = NodeRoom(
                    "candidate", node["metadata"]["labels"], taints,
                    {k: quantity(v) for k, v in node["status"]["allocatable"].items()},
                )
                if room.refusal(spec, asked) or not self._within_limits(pool, instance_type):
                    continue
                if self._vcpus_in_use() + VCPUS[instance_type] > self.quota_vcpus():
                    continue  # EC2: VcpuLimitExceeded; Karpenter retries, nothing launches
                self._serial += 1
                name = f"{pool['metadata']['name']}-{self._serial:05d}"
                room.name = name
                room.take(asked)
                launch = _Launch(pool["metadata"]["name"], name, instance_type, now + self.provision_seconds(), room)
                self._launches[name] = launch
                return launch
        return None

    @staticmethod
    def _instance_types(template: Obj) -> list[str]:
        for req in (template.get("spec") or {}).get("requirements") or []:
            if req.get("key") == INSTANCE_TYPE and req.get("operator") == "In":
                return [t for t in req.get("values") or [] if t in INSTANCE_TYPES]
        return list(INSTANCE_TYPES)

    def _pool_usage(self, pool: str) -> dict[str, Decimal]:
        """What a NodePool's nodes (and launches in flight) hold, as Karpenter counts limits."""
        used: dict[str, Decimal] = {"nodes": Decimal(0)}
        types = [n["metadata"]["labels"].get(INSTANCE_TYPE, "") for n in self.store.items(NODES)
                 if n["metadata"].get("labels", {}).get(NODEPOOL_LABEL) == pool]
        types += [launch.instance_type for launch in self._launches.values() if launch.nodepool == pool]
        for instance_type in types:
            used["nodes"] += 1
            for name, value in INSTANCE_TYPES.get(instance_type, {}).items():
                if name != "pods":
                    used[name] = used.get(name, Decimal(0)) + quantity(value)
        return used

    def _within_limits(self, pool: Obj, instance_type: str) -> bool:
        used = self._pool_usage(pool["metadata"]["name"])
        adds = INSTANCE_TYPES[instance_type]
        for name, limit in ((pool.get("spec") or {}).get("limits") or {}).items():
            if used.get(name, Decimal(0)) + quantity(adds.get(name, "0")) > quantity(limit):
                return False
        return True

    def _vcpus_in_use(self) -> int:
        nodes = [n["metadata"]["labels"].get(INSTANCE_TYPE, "") for n in self.store.items(NODES)]
        return sum(VCPUS.get(t, 0) for t in nodes) + sum(VCPUS[launch.instance_type] for launch in self._launches.values())

    def _register(self, launch: _Launch) -> None:
        pool = self.store.get(NODEPOOLS, "", launch.nodepool)
        template = ((pool or {}).get("spec") or {}).get("template") or {}
        labels = {**((template.get("metadata") or {}).get("labels") or {}), NODEPOOL_LABEL: launch.nodepool}
        node = node_object(
            self.region, launch.name, launch.instance_type, labels, list((template.get("spec") or {}).get("taints") or [])
        )
        node["metadata"]["labels"]["karpenter.sh/registered"] = "true"
        self.store.create(NODES, node)

    def _write_status(self) -> None:
        for pool in self.store.items(NODEPOOLS):
            used = self._pool_usage(pool["metadata"]["name"])
            # Only registered nodes count in status (launches in flight are NodeClaims).
            inflight = [launch for launch in self._launches.values() if launch.nodepool == pool["metadata"]["name"]]
            for launch in inflight:
                used["nodes"] -= 1
                for name, value in INSTANCE_TYPES[launch.instance_type].items():
                    if name != "pods":
                        used[name] -= quantity(value)
            resources = {k: _shown(v) for k, v in sorted(used.items())}
            if (pool.get("status") or {}).get("resources") != resources:
                pool["status"] = {**(pool.get("status") or {}), "resources": resources}
                self.store.update(NODEPOOLS, pool)


def _shown(value: Decimal) -> str:
    if value == value.to_integral_value():
        return str(int(value))
    return f"{int(value * 1000)}m"

"""The controllers behind the Kubernetes emulator: pods coming up, Velero doing its work.

A real cluster answers a scale-up with pods that take time to schedule, pull and pass
their readiness probe; a Velero server answers a Restore by validating it, restoring the
backed-up objects and reporting counts. These loops reproduce what a client can observe
of that (status fields, phases, timestamps), on simulated time divided by the twin's
speed, and read the fault board on every pass so a fault shows at once.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from drpilot_twin.faults import FaultBoard
from drpilot_twin.kube.karpenter import Karpenter
from drpilot_twin.kube.objects import (
    BACKUPS,
    DEPLOYMENTS,
    EVENTS,
    NAMESPACES,
    PODS,
    RESTORES,
    Obj,
    ResourceType,
    Store,
    timestamp,
)
from drpilot_twin.kube.scheduling import NodeRoom, place, reserve_gpus, rooms

# Of a pod's start time, the share spent pulling its image (the rest: the container starting,
# loading the model, passing its readiness probe); and how long the kubelet backs off
# before pulling a missing image again (simulated seconds).
PULL_SHARE = 0.5
BACKOFF_SECONDS = 10.0
# pod_start_seconds is the start of a pod whose image is this big (an LLM serving image with
# CUDA and its runtime: vLLM's and Triton's are about 10 GB); an image of another size
# (`image_bytes.REGION`) pulls in proportion: the pull is a transfer, the rest is not.
DEFAULT_IMAGE_BYTES = 10_000_000_000


def go_duration(seconds: float) -> str:
    """A duration as Go prints a time.Duration truncated to milliseconds (the kubelet's
    events): 313ms, 1.661s, 2m5.2s."""
    ms = int(seconds * 1000 + 1e-6)  # truncated as Go does, not below by float noise
    if ms < 1000:
        return f"{ms}ms"
    minutes, ms = divmod(ms, 60_000)
    secs = f"{ms / 1000:.3f}".rstrip("0").rstrip(".") + "s"
    return f"{minutes}m{secs}" if minutes else secs
_SUFFIX = "bcdfghjklmnpqrstvwxz2456789"  # the alphabet Kubernetes uses for generated names


def template_hash(template: Obj) -> str:
    digest = hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest()
    return "".join(_SUFFIX[int(digest[i : i + 2], 16) % len(_SUFFIX)] for i in range(0, 20, 2))


def _suffix(n: int = 5) -> str:
    return "".join(random.choice(_SUFFIX) for _ in range(n))


def _drop_zero(status: Obj) -> Obj:
    # The API server omits zero counts (omitempty); clients see the field missing.
    return {k: v for k, v in status.items() if v not in (0, None, [], {})}


@dataclass
class _Rollout:
    generation: int = 0
    ready: int = -1
    since: float = 0.0  # monotonic time of the last progress (ProgressDeadlineExceeded)
    hashes: list[str] = field(default_factory=list)  # template hashes in revision order


class DeploymentController:
    """Brings each Deployment's pods to spec.replicas; pods run where the scheduler puts them.

    Scale-up creates Pending pods; each is bound to one node it fits on (scheduling.py) or
    stays Unschedulable with the scheduler's message until room appears (a node from
    Karpenter, another team's pods leaving). A bound pod pulls its image, starts its
    containers and turns Ready `pod_start_seconds / speed` after binding (the fault board's
    per-region value overrides the default); an image the region's registry lacks
    (`image_missing`) keeps it in ErrImagePull. The scheduler, the kubelet and Karpenter
    write the pod's Events as they do. Scale-down removes pods at once, not-ready ones
    first, as a ReplicaSet does. A template change rolls: new pods come up beside the old
    ones, which go as the new ones become ready.
    """

    def __init__(
        self, store: Store, board: FaultBoard, region: str, speed: float, pod_start_seconds: float
    ):
        self.store, self.board, self.region, self.speed = store, board, region, speed
        self.pod_start_seconds = pod_start_seconds
        self._ready_at: dict[str, float | None] = {}  # pod uid -> monotonic time it turns ready
        self._pulled_at: dict[str, float] = {}  # pod uid -> monotonic time its image is pulled
        self._pull_began: dict[str, float] = {}  # pod uid -> monotonic time its (last) pull began
        self._node: dict[str, str] = {}  # pod uid -> the node it is bound to
        self._owner: dict[str, str] = {}  # pod uid -> deployment uid
        self._shown: dict[str, tuple[str, str]] = {}  # pod uid -> (stage, message) last written
        self._rollouts: dict[str, _Rollout] = {}  # deployment uid -> progress bookkeeping
        # Called once per pod as its containers start (scheduled, clock running): the
        # annotations it returns are stamped on the pod. The twin records there which model
        # artifacts the pod found and loaded; a pod keeps them until it is replaced (e.g. by
        # `kubectl rollout restart`, a template change).
        self.on_pod_start: Callable[[Obj], dict[str, str]] | None = None
        self._started: set[str] = set()  # pod uids on_pod_start has seen
        self._pull_failed: set[str] = set()  # pod uids whose image pull failed (ErrImagePull)
        self.karpenter = Karpenter(store, board, region, speed, self._event)
        self._event_serial = 0
        self._gpu_free: int | None = None  # the gpu_free value the other team's pods were set for

    def image_bytes(self) -> int:
        """The size of the images pulled in this region (the `image_bytes` fault, else the default)."""
        return self.board.now.image_bytes.get(self.region, DEFAULT_IMAGE_BYTES)

    def start_delay(self) -> float:
        seconds = self.board.now.pod_start_seconds.get(self.region, self.pod_start_seconds)
        return max(0.0, seconds) / self.speed

    def reconcile(self, now: float, instant: bool = False) -> float | None:
        """One pass over every Deployment; returns the next monotonic time worth waking at.
        `instant` (seeding): every pod ready at once, and the faults' free GPUs counted after."""
        delay = 0.0 if instant else self.start_delay()
        wake: float | None = None
        with self.store.lock:
            if not instant:
                self.share_gpus()
            nodes = rooms(self.store)
            pending: list[Obj] = []
            live = set()
            for dep in self.store.items(DEPLOYMENTS):
                live.add(dep["metadata"]["uid"])
                due = self._reconcile_one(dep, now, delay, instant, nodes, pending)
                if due is not None:
                    wake = due if wake is None else min(wake, due)
            due = self.karpenter.reconcile(pending, now)
            if due is not None:
                wake = due if wake is None else min(wake, due)
            # Garbage-collect pods of deleted deployments (ownerReference cascade).
            pods = list(self.store.items(PODS))
            for pod in pods:
                owner = self._owner.get(pod["metadata"]["uid"])
                if owner is not None and owner not in live:
                    self._delete_pod(pod)
            # Forget pods deleted through the API (the ReplicaSet replaced them already).
            existing = {p["metadata"]["uid"] for p in pods}
            for uid in [u for u in self._owner if u not in existing]:
                self._forget(uid)
        return wake

    def share_gpus(self, again: bool = False) -> None:
        """Another team's pods take the GPUs `gpu_free` (or `pods_stalled`) says are not free;
        `again`: count anew (seeding bound the region's own pods since)."""
        faults = self.board.now
        wanted = faults.gpu_free.get(self.region)
        if self.region in faults.pods_stalled:
            wanted = 0
        if wanted != self._gpu_free or (again and wanted is not None):
            self._gpu_free = None if wanted is None else int(wanted)
            reserve_gpus(self.store, self._gpu_free)

    # ------------------------------------------------------------------ one deployment
    def _reconcile_one(
        self, dep: Obj, now: float, delay: float, instant: bool, nodes: dict[str, NodeRoom], pending: list[Obj]
    ) -> float | None:
        meta, spec = dep["metadata"], dep.get("spec", {})
        uid, ns, name = meta["uid"], meta["namespace"], meta["name"]
        desired = int(spec.get("replicas", 1))
        current_hash = template_hash(spec.get("template", {}))
        rollout = self._rollouts.setdefault(uid, _Rollout(since=now))
        if current_hash not in rollout.hashes:
            rollout.hashes.append(current_hash)
        revision = rollout.hashes.index(current_hash) + 1
        rs_name = f"{name}-{current_hash}"

        pods = [
            p for p in self.store.items(PODS, ns) if self._owner.get(p["metadata"]["uid"]) == uid
        ]
        new = [p for p in pods if p["metadata"]["labels"].get("pod-template-hash") == current_hash]
        old = [p for p in pods if p not in new]

        # Scale the new ReplicaSet: surplus goes at once, not-ready and newest first.
        if len(new) > desired:
            for pod in self._deletion_order(new)[: len(new) - desired]:
                self._delete_pod(pod)
                new.remove(pod)
                nodes = rooms(self.store)  # its requests are free again
        while len(new) < desired:
            new.append(self._create_pod(dep, current_hash, rs_name))

        # Scheduling, then readiness and the pod status a client sees.
        wake = None
        for pod in new + old:
            due = self._advance(pod, now, delay, instant, nodes, pending)
            if due is not None:
                wake = due if wake is None else min(wake, due)

        # Old pods leave as new ones become ready (rolling update, surge 100%).
        new_ready = sum(1 for p in new if self._is_ready(p["metadata"]["uid"], now))
        keep_old = max(0, desired - new_ready)
        if len(old) > keep_old:
            for pod in self._deletion_order(old)[: len(old) - keep_old]:
                self._delete_pod(pod)
                old.remove(pod)

        ready = sum(1 for p in new + old if self._is_ready(p["metadata"]["uid"], now))
        if meta.get("generation", 1) != rollout.generation or ready > rollout.ready:
            rollout.since = now
        rollout.generation, rollout.ready = meta.get("generation", 1), ready
        self._write_deployment_status(
            dep, desired, new, old, ready, rs_name, rollout, revision, now
        )
        if not (len(new) == desired and not old and ready == desired):
            # An incomplete rollout turns ProgressDeadlineExceeded at its deadline.
            deadline = rollout.since + float(spec.get("progressDeadlineSeconds", 600)) / self.speed
            if deadline > now:
                wake = deadline if wake is None else min(wake, deadline)
        return wake

    def _advance(
        self, pod: Obj, now: float, delay: float, instant: bool, nodes: dict[str, NodeRoom], pending: list[Obj]
    ) -> float | None:
        """Bind the pod if it is not yet, move its clocks, write what changed; its next due time."""
        uid = pod["metadata"]["uid"]
        message = ""
        if uid not in self._node:
            node, message = place(pod.get("spec") or {}, nodes)
            if node is None:
                pending.append(pod)
            else:
                self._node[uid] = node
                self._bind(pod, node)
                self._pull_began[uid] = now
                self._pulled_at[uid] = now + delay * PULL_SHARE * self.image_bytes() / DEFAULT_IMAGE_BYTES
                self._ready_at[uid] = self._pulled_at[uid] + delay * (1 - PULL_SHARE)
        if uid in self._node:
            if instant and (self._ready_at.get(uid) or 0) > now:
                self._pulled_at[uid] = self._ready_at[uid] = now
            missing = self._missing_image(pod)
            if missing and not self._is_ready(uid, now) and self._pulled_at[uid] <= now:
                self._pull_failed.add(uid)
            if uid in self._pull_failed:
                if missing:
                    # The kubelet backs off and pulls again; the start runs from the pull that works.
                    self._pull_began[uid] = now
                    self._pulled_at[uid] = now + BACKOFF_SECONDS / self.speed
                    self._ready_at[uid] = self._pulled_at[uid] + delay * (1 - PULL_SHARE)
                    message = missing
                else:
                    self._pull_failed.discard(uid)  # the next pull, after the back-off, works
            if self._pulled_at[uid] <= now and uid not in self._started and self.on_pod_start:
                self._started.add(uid)
                self._annotate_pod(pod, self.on_pod_start(pod))
        stage = self._stage(uid, now, bool(message) and uid in self._node)
        if self._shown.get(uid) != (stage, message):  # write a pod's status only when it changes
            self._write_pod_status(pod, stage, message)
            self._tell(pod, self._shown.get(uid, ("", ""))[0], stage, message)
            self._shown[uid] = (stage, message)
        if uid not in self._node:
            return None
        due = [t for t in (self._pulled_at[uid], self._ready_at[uid] or 0) if t > now]
        return min(due, default=None)

    def _stage(self, uid: str, now: float, pull_failed: bool) -> str:
        if uid not in self._node:
            return "unschedulable"
        if self._is_ready(uid, now):
            return "ready"
        if pull_failed:
            return "pull-failed"
        return "started" if self._pulled_at[uid] <= now else "pulling"

    def _missing_image(self, pod: Obj) -> str:
        image = self.board.now.image_missing.get(self.region)
        for c in (pod.get("spec") or {}).get("containers") or []:
            if image and c.get("image") == image:
                return (
                    f'Failed to pull image "{image}": rpc error: code = NotFound desc = failed to pull '
                    f'and unpack image "{image}": failed to resolve reference "{image}": {image}: not found'
                )
        return ""

    def _is_ready(self, pod_uid: str, now: float) -> bool:
        ready_at = self._ready_at.get(pod_uid)
        return ready_at is not None and ready_at <= now

    def _deletion_order(self, pods: list[Obj]) -> list[Obj]:
        """Not-ready pods first, then the newest (what a ReplicaSet removes on scale-down)."""
        now = time.monotonic()
        newest_first = sorted(pods, key=lambda p: p["metadata"]["creationTimestamp"], reverse=True)
        return sorted(newest_first, key=lambda p: self._is_ready(p["metadata"]["uid"], now))

    def _create_pod(self, dep: Obj, pod_hash: str, rs_name: str) -> Obj:
        template = dep.get("spec", {}).get("template", {})
        labels = {
            **(template.get("metadata", {}).get("labels") or {}),
            "pod-template-hash": pod_hash,
        }
        pod_spec = json.loads(json.dumps(template.get("spec", {})))
        pod_spec.setdefault("restartPolicy", "Always")
        pod = {
            "metadata": {
                "name": f"{rs_name}-{_suffix()}",
                "namespace": dep["metadata"]["namespace"],
                "labels": labels,
                "ownerReferences": [
                    {
                        "apiVersion": "apps/v1",
                        "kind": "ReplicaSet",
                        "name": rs_name,
                        "uid": dep["metadata"]["uid"],
                        "controller": True,
                        "blockOwnerDeletion": True,
                    }
                ],
            },
            "spec": pod_spec,
            "status": {"phase": "Pending", "qosClass": "BestEffort"},
        }
        created = self.store.create(PODS, pod)
        self._owner[created["metadata"]["uid"]] = dep["metadata"]["uid"]
        return created

    def _delete_pod(self, pod: Obj) -> None:
        self.store.delete(PODS, pod["metadata"]["namespace"], pod["metadata"]["name"])
        self._forget(pod["metadata"]["uid"])

    def _forget(self, uid: str) -> None:
        for table in (self._owner, self._ready_at, self._shown, self._node, self._pulled_at, self._pull_began):
            table.pop(uid, None)
        self._started.discard(uid)
        self._pull_failed.discard(uid)

    def _bind(self, pod: Obj, node: str) -> None:
        """The binding the scheduler posts: spec.nodeName set once."""
        stored = self.store.get(PODS, pod["metadata"]["namespace"], pod["metadata"]["name"])
        if stored is None:
            return
        stored["spec"]["nodeName"] = node
        self.store.update(PODS, stored)
        pod["spec"] = stored["spec"]

    def _annotate_pod(self, pod: Obj, annotations: dict[str, str]) -> None:
        stored = self.store.get(PODS, pod["metadata"]["namespace"], pod["metadata"]["name"])
        if stored is None or not annotations:
            return
        stored["metadata"].setdefault("annotations", {}).update(annotations)
        self.store.update(PODS, stored)
        pod["metadata"] = stored["metadata"]

    # ------------------------------------------------------------------ events
    def _tell(self, pod: Obj, before: str, stage: str, message: str) -> None:
        """The Events the scheduler and the kubelet write as a pod moves from `before` to `stage`."""
        containers = (pod.get("spec") or {}).get("containers") or []
        if stage == "unschedulable":
            self._event(pod, "FailedScheduling", message, "default-scheduler", warning=True)
            return
        order = ["", "unschedulable", "pulling", "pull-failed", "started", "ready"]
        if order.index(before) < order.index("pulling"):
            ns, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
            node = self._node.get(pod["metadata"]["uid"], "")
            self._event(pod, "Scheduled", f"Successfully assigned {ns}/{name} to {node}", "default-scheduler")
            for c in containers:
                self._event(pod, "Pulling", f'Pulling image "{c.get("image", "")}"', "kubelet", container=c)
        if stage == "pull-failed":
            for c in containers:
                if message and c.get("image", "") in message:
                    self._event(pod, "Failed", message, "kubelet", warning=True, container=c)
                    self._event(pod, "Failed", "Error: ErrImagePull", "kubelet", warning=True, container=c)
        if stage in ("started", "ready") and before not in ("started", "ready"):
            for c in containers:
                image = c.get("image", "")
                uid = pod["metadata"]["uid"]
                took = go_duration(max(self._pulled_at.get(uid, 0.0) - self._pull_began.get(uid, 0.0), 0.0))
                # The kubelet's words (pkg/kubelet/images/image_manager.go), e.g. Successfully pulled
                # image "busybox" in 1.661s (1.661s including waiting). Image size: 4269694 bytes.
                self._event(pod, "Pulled", f'Successfully pulled image "{image}" in {took} ({took} including waiting). '
                            f"Image size: {self.image_bytes()} bytes.", "kubelet", container=c)
                self._event(pod, "Created", f"Created container: {c.get('name', '')}", "kubelet", container=c)
                self._event(pod, "Started", f"Started container {c.get('name', '')}", "kubelet", container=c)

    def _event(
        self, pod: Obj, reason: str, message: str, component: str, *, warning: bool = False, container: Obj | None = None
    ) -> None:
        meta = pod["metadata"]
        stamp = timestamp()
        # Named as the API's recorders name them, POD.<UnixNano in hex>: listed in key order,
        # a pod's events come in the order they happened.
        self._event_serial = max(self._event_serial + 1, time.time_ns())
        involved = {"kind": "Pod", "namespace": meta["namespace"], "name": meta["name"], "uid": meta["uid"], "apiVersion": "v1"}
        if container is not None:
            involved["fieldPath"] = f"spec.containers{{{container.get('name', '')}}}"
        self.store.create(
            EVENTS,
            {
                "metadata": {"name": f"{meta['name']}.{self._event_serial:x}", "namespace": meta["namespace"]},
                "involvedObject": involved,
                "reason": reason,
                "message": message,
                "source": {"component": component, **({"host": self._node[meta["uid"]]} if component == "kubelet" else {})},
                "firstTimestamp": stamp,
                "lastTimestamp": stamp,
                "eventTime": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                "count": 1,
                "type": "Warning" if warning else "Normal",
                "reportingComponent": component,
            },
        )

    def _write_pod_status(self, pod: Obj, stage: str, message: str) -> None:
        stored = self.store.get(PODS, pod["metadata"]["namespace"], pod["metadata"]["name"])
        if stored is None:
            return
        old_status = stored.get("status", {})
        stamp = old_status.get("startTime") or timestamp()
        containers = stored.get("spec", {}).get("containers", [])
        qos = "Burstable" if any((c.get("resources") or {}).get("requests") for c in containers) else "BestEffort"
        if stage == "unschedulable":
            status = {
                "phase": "Pending",
                "qosClass": qos,
                "conditions": [
                    {
                        "type": "PodScheduled",
                        "status": "False",
                        "reason": "Unschedulable",
                        "message": message,
                        "lastTransitionTime": _keep_time(old_status, "PodScheduled", "False"),
                    }
                ],
            }
        else:
            ready = stage == "ready"
            running = stage in ("started", "ready")
            if running:
                state: Obj = {"running": {"startedAt": _keep_started(old_status) or timestamp()}}
            elif stage == "pull-failed":
                state = {"waiting": {"reason": "ErrImagePull", "message": message}}
            else:
                state = {"waiting": {"reason": "ContainerCreating"}}
            status = {
                "phase": "Running" if running else "Pending",
                "qosClass": qos,
                "hostIP": "10.0.0.1",
                "podIP": _pod_ip(stored["metadata"]["uid"]) if running else None,
                "startTime": stamp,
                "conditions": [
                    {
                        "type": "PodScheduled",
                        "status": "True",
                        "lastTransitionTime": _keep_time(old_status, "PodScheduled", "True"),
                    },
                    {
                        "type": "Initialized",
                        "status": "True",
                        "lastTransitionTime": _keep_time(old_status, "Initialized", "True"),
                    },
                    {
                        "type": "ContainersReady",
                        "status": str(ready),
                        "lastTransitionTime": _keep_time(old_status, "ContainersReady", str(ready)),
                    },
                    {
                        "type": "Ready",
                        "status": str(ready),
                        "lastTransitionTime": _keep_time(old_status, "Ready", str(ready)),
                    },
                ],
                "containerStatuses": [
                    {
                        "name": c.get("name", ""),
                        "image": c.get("image", ""),
                        "imageID": f"{c.get('image', '')}@sha256:{'0' * 64}" if running else "",
                        "ready": ready,
                        "restartCount": 0,
                        "started": running,
                        "state": state,
                    }
                    for c in containers
                ],
            }
            if not ready:
                for cond in status["conditions"][2:]:
                    cond["reason"] = "ContainersNotReady"
                    cond["message"] = (
                        "containers with unready status: ["
                        + " ".join(c.get("name", "") for c in containers)
                        + "]"
                    )
        stored["status"] = {k: v for k, v in status.items() if v is not None}
        self.store.update(PODS, stored)

    def _write_deployment_status(
        self,
        dep: Obj,
        desired: int,
        new: list[Obj],
        old: list[Obj],
        ready: int,
        rs_name: str,
        rollout: _Rollout,
        revision: int,
        now: float,
    ) -> None:
        stored = self.store.get(DEPLOYMENTS, dep["metadata"]["namespace"], dep["metadata"]["name"])
        if stored is None:
            return
        annotations = stored["metadata"].setdefault("annotations", {})
        annotations["deployment.kubernetes.io/revision"] = str(revision)
        spec = stored.get("spec", {})
        old_status = stored.get("status", {})
        max_unavailable = math.floor(desired * 0.25)
        complete = len(new) == desired and not old and ready == desired
        deadline = float(spec.get("progressDeadlineSeconds", 600)) / self.speed
        if complete:
            progressing = (
                "True",
                "NewReplicaSetAvailable",
                f'ReplicaSet "{rs_name}" has successfully progressed.',
            )
        elif now - rollout.since > deadline:
            progressing = (
                "False",
                "ProgressDeadlineExceeded",
                f'ReplicaSet "{rs_name}" has timed out progressing.',
            )
        else:
            progressing = ("True", "ReplicaSetUpdated", f'ReplicaSet "{rs_name}" is progressing.')
        available = (
            ("True", "MinimumReplicasAvailable", "Deployment has minimum availability.")
            if ready >= desired - max_unavailable
            else (
                "False",
                "MinimumReplicasUnavailable",
                "Deployment does not have minimum availability.",
            )
        )
        conditions = [
            _condition(old_status, "Available", *available),
            _condition(old_status, "Progressing", *progressing),
        ]
        stored["status"] = _drop_zero(
            {
                "observedGeneration": stored["metadata"].get("generation", 1),
                "replicas": len(new) + len(old),
                "updatedReplicas": len(new),
                "readyReplicas": ready,
                "availableReplicas": ready,
                "unavailableReplicas": max(0, desired - ready),
                "conditions": conditions,
            }
        )
        self.store.update(DEPLOYMENTS, stored)


def _keep_time(old_status: Obj, type_: str, value: str) -> str:
    for cond in old_status.get("conditions") or []:
        if (
            cond.get("type") == type_
            and cond.get("status") == value
            and cond.get("lastTransitionTime")
        ):
            return cond["lastTransitionTime"]
    return timestamp()


def _keep_started(old_status: Obj) -> str:
    for cs in old_status.get("containerStatuses") or []:
        started = ((cs.get("state") or {}).get("running") or {}).get("startedAt")
        if started:
            return started
    return ""


def _condition(old_status: Obj, type_: str, status: str, reason: str, message: str) -> Obj:
    for cond in old_status.get("conditions") or []:
        if cond.get("type") == type_ and (
            cond.get("status"),
            cond.get("reason"),
            cond.get("message"),
        ) == (status, reason, message):
            return cond
    previous = next((c for c in old_status.get("conditions") or [] if c.get("type") == type_), None)
    now = timestamp()
    transition = (
        previous["lastTransitionTime"] if previous and previous.get("status") == status else now
    )
    return {
        "type": type_,
        "status": status,
        "lastUpdateTime": now,
        "lastTransitionTime": transition,
        "reason": reason,
        "message": message,
    }


def _pod_ip(uid: str) -> str:
    n = int(uid.replace("-", "")[:6], 16)
    return f"10.{(n >> 16) % 256}.{(n >> 8) % 256}.{n % 254 + 1}"


# ---------------------------------------------------------------------------------- Velero
# Restores and Backups end in the same phases.
TERMINAL_PHASES = ("Completed", "PartiallyFailed", "Failed", "FailedValidation")


@dataclass
class _Run:
    phase_since: float
    items: list[Obj] = field(default_factory=list)
    outcome: dict[str, Any] = field(default_factory=dict)


class VeleroController:
    """Moves Restores (and Backups created through the API) through Velero's phases.

    Restore: New -> InProgress (with progress counts) -> Finalizing -> Completed. A region in
    `velero_partially_failed` ends FinalizingPartiallyFailed -> PartiallyFailed with error
    and warning counts; in `velero_failed` it ends Failed with a failureReason. A Restore
    naming no existing Backup ends FailedValidation with Velero's validation error text.
    A completed restore really restores: namespaces and Deployments the backup holds are
    created where missing; ones that exist and differ count a warning, as Velero's
    default existing-resource policy ("none") does.
    """

    QUEUE_SECONDS = 1.0  # New -> InProgress (the controller picking it up and validating)
    FINALIZE_SECONDS = 2.0

    def __init__(
        self, store: Store, board: FaultBoard, region: str, speed: float, restore_seconds: float
    ):
        self.store, self.board, self.region, self.speed = store, board, region, speed
        self.restore_seconds = restore_seconds
        self._runs: dict[str, _Run] = {}
        # What each Backup holds: (namespace, backup name) -> Deployment manifests. In real
        # Velero this is a tarball in object storage; here it is kept beside the Backup object.
        self.contents: dict[tuple[str, str], list[Obj]] = {}

    def capture(self, namespace: str, backup: str, included: list[str] | None) -> list[Obj]:
        """Record what a Backup holds: the Deployments now in its included namespaces."""
        items = []
        with self.store.lock:
            for dep in self.store.items(DEPLOYMENTS):
                if (
                    included
                    and "*" not in included
                    and dep["metadata"]["namespace"] not in included
                ):
                    continue
                meta = dep["metadata"]
                manifest = {
                    "apiVersion": "apps/v1",
                    "kind": "Deployment",
                    "metadata": {
                        k: meta[k]
                        for k in ("name", "namespace", "labels", "annotations")
                        if k in meta
                    },
                    "spec": dep.get("spec", {}),
                }
                manifest["metadata"].get("annotations", {}).pop(
                    "deployment.kubernetes.io/revision", None
                )
                items.append(manifest)
        self.contents[(namespace, backup)] = items
        return items

    def reconcile(self, now: float) -> float | None:
        wake: float | None = None
        with self.store.lock:
            for restore in self.store.items(RESTORES):
                due = self._restore(restore, now)
                if due is not None:
                    wake = due if wake is None else min(wake, due)
            for backup in self.store.items(BACKUPS):
                due = self._backup(backup, now)
                if due is not None:
                    wake = due if wake is None else min(wake, due)
        return wake

    # ------------------------------------------------------------------ restores
    def _set_status(self, rt, obj: Obj, **changes: Any) -> None:
        stored = self.store.get(rt, obj["metadata"]["namespace"], obj["metadata"]["name"])
        if stored is None:
            return
        stored["status"] = {
            k: v for k, v in {**stored.get("status", {}), **changes}.items() if v is not None
        }
        self.store.update(rt, stored)

    def _run_of(self, rt: ResourceType, obj: Obj, now: float) -> tuple[_Run | None, str]:
        """The run moving `obj` through its phases, and its phase: a run starts (in phase New)
        the first time the object is seen, and is forgotten once the object has ended."""
        uid = obj["metadata"]["uid"]
        phase = obj.get("status", {}).get("phase", "")
        if phase in TERMINAL_PHASES:
            self._runs.pop(uid, None)
            return None, phase
        run = self._runs.get(uid)
        if run is None:
            run = self._runs[uid] = _Run(phase_since=now)
            if phase == "":
                self._set_status(rt, obj, phase="New")
                phase = "New"
        return run, phase

    def _restore(self, restore: Obj, now: float) -> float | None:
        run, phase = self._run_of(RESTORES, restore, now)
        if run is None:
            return None
        status = restore.get("status", {})
        elapsed = now - run.phase_since
        if phase == "New":
            due = run.phase_since + self.QUEUE_SECONDS / self.speed
            if now < due:
                return due
            errors = self._validate(restore)
            if errors:
                self._set_status(
                    RESTORES,
                    restore,
                    phase="FailedValidation",
                    validationErrors=errors,
                    completionTimestamp=timestamp(),
                )
                return None
            run.items = self._items_for(restore)
            run.phase_since = now
            self._set_status(
                RESTORES,
                restore,
                phase="InProgress",
                startTimestamp=timestamp(),
                progress={"totalItems": len(run.items), "itemsRestored": 0},
            )
            return now + 0.001
        if phase == "InProgress":
            duration = self.restore_seconds / self.speed
            total = len(run.items)
            if elapsed < duration:
                done = int(total * elapsed / duration) if duration else total
                if done != status.get("progress", {}).get("itemsRestored"):
                    self._set_status(
                        RESTORES, restore, progress={"totalItems": total, "itemsRestored": done}
                    )
                step = duration / max(total, 1)
                return min(run.phase_since + duration, now + step)
            faults = self.board.now
            if self.region in faults.velero_failed:
                self._set_status(
                    RESTORES,
                    restore,
                    phase="Failed",
                    completionTimestamp=timestamp(),
                    failureReason="error downloading backup: rpc error: code = Unknown desc = "
                    f"AccessDenied: access to the backup storage location was denied (sandbox fault "
                    f"velero_failed in region {self.region})",
                )
                return None
            run.outcome = self._restore_items(
                restore, run.items, self.region in faults.velero_partially_failed
            )
            run.phase_since = now
            finalizing = "FinalizingPartiallyFailed" if run.outcome["errors"] else "Finalizing"
            self._set_status(
                RESTORES,
                restore,
                phase=finalizing,
                progress={"totalItems": total, "itemsRestored": run.outcome["restored"]},
                errors=run.outcome["errors"] or None,
                warnings=run.outcome["warnings"] or None,
            )
            return now + self.FINALIZE_SECONDS / self.speed
        if phase in ("Finalizing", "FinalizingPartiallyFailed"):
            due = run.phase_since + self.FINALIZE_SECONDS / self.speed
            if now < due:
                return due
            final = "PartiallyFailed" if phase == "FinalizingPartiallyFailed" else "Completed"
            self._set_status(RESTORES, restore, phase=final, completionTimestamp=timestamp())
            self._runs.pop(restore["metadata"]["uid"], None)
        return None

    def _validate(self, restore: Obj) -> list[str]:
        spec = restore.get("spec", {})
        backup_name, schedule = spec.get("backupName", ""), spec.get("scheduleName", "")
        if bool(backup_name) == bool(schedule):
            return [
                "Either a backup or schedule must be specified as a source for the restore, but not both"
            ]
        if schedule:
            # Velero restores "the most recent successful backup created from this schedule"
            # and writes its name into spec.backupName (Restore API type, velero.io/docs/
            # v1.19/api-types/restore/; `velero restore create --from-schedule`).
            latest = latest_schedule_backup(self.store, restore["metadata"]["namespace"], schedule)
            if latest is None:
                return ["No backups found for schedule"]
            stored = self.store.require(RESTORES, restore["metadata"]["namespace"], restore["metadata"]["name"])
            stored["spec"]["backupName"] = latest["metadata"]["name"]
            self.store.update(RESTORES, stored)
            restore["spec"] = stored["spec"]
            return []
        backup = self.store.get(BACKUPS, restore["metadata"]["namespace"], backup_name)
        if backup is None:
            return [f'Error retrieving backup: backups.velero.io "{backup_name}" not found']
        if backup.get("status", {}).get("phase") not in ("Completed", "PartiallyFailed"):
            return [
                f'Error retrieving backup: backup "{backup_name}" is not in phase Completed or PartiallyFailed'
            ]
        return []

    def _items_for(self, restore: Obj) -> list[Obj]:
        spec = restore.get("spec", {})
        items = self.contents.get(
            (restore["metadata"]["namespace"], spec.get("backupName", "")), []
        )
        included = spec.get("includedNamespaces") or ["*"]
        excluded = spec.get("excludedNamespaces") or []
        mapping = spec.get("namespaceMapping") or {}
        chosen = []
        for item in items:
            ns = item["metadata"]["namespace"]
            if ("*" in included or ns in included) and ns not in excluded:
                copy_ = json.loads(json.dumps(item))
                copy_["metadata"]["namespace"] = mapping.get(ns, ns)
                chosen.append(copy_)
        return chosen

    def _restore_items(self, restore: Obj, items: list[Obj], partial: bool) -> dict[str, int]:
        # A partial failure: the first half of the items fail (at least one error).
        failing = math.ceil(len(items) / 2) if partial else 0
        errors = max(1, failing) if partial else 0
        warnings, restored = 0, 0
        for index, item in enumerate(items):
            if index < failing:
                continue
            ns, name = item["metadata"]["namespace"], item["metadata"]["name"]
            if self.store.get(NAMESPACES, "", ns) is None:
                self.store.create(
                    NAMESPACES,
                    {
                        "metadata": {
                            "name": ns,
                            "labels": {
                                "kubernetes.io/metadata.name": ns,
                                "velero.io/restore-name": restore["metadata"]["name"],
                            },
                        },
                        "spec": {"finalizers": ["kubernetes"]},
                        "status": {"phase": "Active"},
                    },
                )
            existing = self.store.get(DEPLOYMENTS, ns, name)
            if existing is None:
                obj = json.loads(json.dumps(item))
                obj["metadata"].setdefault("labels", {}).update(
                    {
                        "velero.io/backup-name": restore.get("spec", {}).get("backupName", ""),
                        "velero.io/restore-name": restore["metadata"]["name"],
                    }
                )
                self.store.create(DEPLOYMENTS, obj)
                restored += 1
            elif existing.get("spec") != item.get("spec"):
                warnings += 1  # "the in-cluster version is different than the backed-up version"
                restored += 1
            else:
                restored += 1
        return {"errors": errors, "warnings": warnings, "restored": restored}

    # ------------------------------------------------------------------ backups
    def _backup(self, backup: Obj, now: float) -> float | None:
        run, phase = self._run_of(BACKUPS, backup, now)
        if run is None:
            return None
        if phase in ("", "New"):
            if now < run.phase_since + self.QUEUE_SECONDS / self.speed:
                return run.phase_since + self.QUEUE_SECONDS / self.speed
            run.phase_since = now
            self._set_status(BACKUPS, backup, phase="InProgress", startTimestamp=timestamp())
            return now + self.restore_seconds / self.speed
        if phase == "InProgress":
            due = run.phase_since + self.restore_seconds / self.speed
            if now < due:
                return due
            items = self.capture(
                backup["metadata"]["namespace"],
                backup["metadata"]["name"],
                backup.get("spec", {}).get("includedNamespaces"),
            )
            self._set_status(
                BACKUPS,
                backup,
                phase="Completed",
                completionTimestamp=timestamp(),
                expiration=timestamp(datetime.now(UTC) + timedelta(days=30)),
                progress={"totalItems": len(items), "itemsBackedUp": len(items)},
                version=1,
                formatVersion="1.1.0",
            )
            self._runs.pop(backup["metadata"]["uid"], None)
        return None


SCHEDULE_LABEL = "velero.io/schedule-name"


def latest_schedule_backup(store: Store, namespace: str, schedule: str) -> Obj | None:
    """The schedule's newest Completed Backup (by status.completionTimestamp), or None."""
    done = [
        b
        for b in store.items(BACKUPS, namespace)
        if (b["metadata"].get("labels") or {}).get(SCHEDULE_LABEL) == schedule
        and b.get("status", {}).get("phase") == "Completed"
        and b.get("status", {}).get("completionTimestamp")
    ]
    # RFC 3339 UTC timestamps of one format order as strings do.
    return max(done, key=lambda b: b["status"]["completionTimestamp"], default=None)


def random_name_suffix() -> str:
    """Five characters as Kubernetes appends to generateName."""
    return _suffix()

"""Kubernetes activities: read a region's replica counts, scale its workloads and wait for ready.

Scaling patches the `scale` subresource (as `kubectl scale` does) only where the count
differs, so running twice makes one change; the wait heartbeats ready counts and keeps its
start time in the heartbeat details, so a retry after a crash or a 503 waits out the same
deadline instead of a fresh one (the clock runs from the last patch: a retry that still had to
patch a deployment gives its new pods the whole budget). Clients come per kubeconfig context, the runbook's
region -> context mapping picks one, and every API error is classified for the caller.
A rollout restart patches the pod template's restartedAt annotation (as `kubectl rollout
restart` does) with a value the caller chooses, so a retry finds it set and restarts nothing.
"""


from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from kubernetes import client as k8s
from temporalio import activity

from activities import contracts
from activities.contracts import (
    CapacityInput,
    CapacityResult,
    ColdStart,
    KubeReadInput,
    ReplicaState,
    RolloutRestartInput,
    RolloutRestartResult,
    ScaledWait,
    ScaleInput,
    ScaleResult,
)
from activities.kube.capacity import (
    Headroom,
    Need,
    autoscaler_headroom,
    fit,
    instance_vcpus,
    judge,
    nodepool_headroom,
    rooms_now,
)
from activities.kube.clusters import (
    MIN_POLL_SECONDS,
    REQUEST_TIMEOUT,
    RESTARTED_AT,
    api_errors,
    classify,
    cluster_client,
    monotonic_from_wall,
    pause,
    resume_details,
)
from activities.kube.cold_start import read_cold_start
from activities.kube.deployments import DeploymentReads
from activities.kube.inventory import InventoryReader
from activities.waits import PolledWait


class KubeActivities(DeploymentReads):
    def all(self) -> list[Callable[..., Any]]:
        return [self.read, self.scale, self.rollout_restart, self.capacity]

    # ------------------------------------------------------------------ capacity
    @activity.defn(name=contracts.KUBE_CAPACITY)
    def capacity(self, input: CapacityInput) -> CapacityResult:
        """Whether the region's nodes (and what its autoscaler may add) hold the workloads at
        the counts `input.to` asks for: read-only, a few paginated lists (activities/kube/capacity.py)."""
        context, api = cluster_client(self.clients, input.runbook, input.region, "read capacity")
        workloads = input.runbook.workloads_in(input.region)
        try:
            found = InventoryReader(api).read([(w.namespace, w.deployment) for w in workloads])
        except api_errors() as exc:
            raise classify(
                exc, context=context, region=input.region, resource="nodes, pods and NodePools",
                not_found_fix=f"create the Deployments of runbook {input.runbook.name} there",
                rbac="get, list on nodes, list on pods (ClusterRole drpilot-capacity, "
                "infra/kubernetes/dr-cluster/capacity-role.yaml)",
            ) from exc
        needs = []
        for w in workloads:
            dep = found.templates[f"{w.namespace}/{w.deployment}"]
            labels = ((dep.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
            running = sum(
                1 for p in found.pods
                if p["metadata"].get("namespace") == w.namespace and (p.get("spec") or {}).get("nodeName")
                and labels and all((p["metadata"].get("labels") or {}).get(k) == v for k, v in labels.items())
            )
            wanted = w.replicas.active if input.to == "active" else w.replicas.standby
            template = ((dep.get("spec") or {}).get("template") or {}).get("spec") or {}
            needs.append(Need(f"{w.namespace}/{w.deployment}", wanted, running, template))
        headroom: list[Headroom | str] = [nodepool_headroom(p, found.nodes) for p in found.nodepools or []]
        if found.autoscaler:
            headroom += autoscaler_headroom(found.autoscaler, found.nodes)
        counted = [h for h in headroom if isinstance(h, Headroom)]
        fits = fit(needs, rooms_now(found.nodes, found.pods), counted)
        starting, running = instance_vcpus(found.nodes, counted)
        result = judge(input.region, fits, headroom, len(found.nodes))
        return result.model_copy(update={"requests": found.requests, "scale_out": starting, "running_vcpus": running})

    # ------------------------------------------------------------------ read
    @activity.defn(name=contracts.KUBE_READ)
    def read(self, input: KubeReadInput) -> ReplicaState:
        context, api = cluster_client(
            self.clients, input.runbook, input.region, "read replica counts"
        )
        workloads = [(w.namespace, w.deployment) for w in input.runbook.workloads_in(input.region)]
        if input.workloads:
            workloads = [tuple(key.split("/", 1)) for key in input.workloads]  # type: ignore[misc]
        deployments = self._states(k8s.AppsV1Api(api), input, context, workloads)
        return ReplicaState(region=input.region, deployments=deployments)

    # ------------------------------------------------------------------ scale
    @activity.defn(name=contracts.KUBE_SCALE)
    def scale(self, input: ScaleInput) -> ScaleResult:
        context, api = cluster_client(self.clients, input.runbook, input.region, "scale workloads")
        apps = k8s.AppsV1Api(api)
        targets = self._targets(input)
        resume = resume_details()
        started = float(resume.get("started_at") or time.time())
        changed: list[str] = list(resume.get("changed") or [])
        patched_at: dict[str, float] = {}  # when each was patched (this attempt): its pods' clock
        for ns, name, replicas in targets:
            key = f"{ns}/{name}"
            current = self._call(
                lambda ns=ns, name=name: apps.read_namespaced_deployment_scale(
                    name, ns, _request_timeout=REQUEST_TIMEOUT
                ),
                input,
                context,
                ns,
                name,
                "get",
            )
            if (current.spec.replicas if current.spec else 0) != replicas:
                patched_at[key] = time.time()  # the request: the controller may act before the answer
                self._call(
                    lambda ns=ns, name=name, replicas=replicas: (
                        apps.patch_namespaced_deployment_scale(
                            name,
                            ns,
                            {"spec": {"replicas": replicas}},
                            _request_timeout=REQUEST_TIMEOUT,
                        )
                    ),
                    input,
                    context,
                    ns,
                    name,
                    "patch",
                )
                # The wait's clock runs from the last patch: pods cannot start before they
                # are asked for. A retry that had to patch (its predecessor died between two
                # deployments) gets the whole budget from here; one that finds every count
                # in place keeps the inherited deadline.
                started = time.time()
                if key not in changed:
                    changed.append(key)
            activity.heartbeat({"started_at": started, "changed": changed, "phase": "patched"})

        states = self._ready_states(apps, input, context, targets)
        waits: list[ScaledWait] = []
        if input.wait_ready:
            deadline = started + input.timeout_seconds
            poll = max(MIN_POLL_SECONDS, self.poll_seconds / input.speed)
            wait = PolledWait("pods", input.speed, self.poll_seconds, monotonic_from_wall(started))
            while True:
                ready = {f"{s.namespace}/{s.name}": s.ready for s in states}
                activity.heartbeat(
                    {
                        "started_at": started,
                        "changed": changed,
                        "phase": "waiting",
                        "ready": ready,
                        "desired": {f"{ns}/{name}": n for ns, name, n in targets},
                    }
                )
                short = [s for s, (_, _, n) in zip(states, targets, strict=True) if s.ready < n]
                if not short:
                    waits = wait.done()
                    break
                wait.pending()
                if time.time() >= deadline:
                    raise self._not_ready(api, apps, input, context, short, targets, started)
                pause(min(poll, max(0.0, deadline - time.time())))
                states = self._ready_states(apps, input, context, targets)
        cold = self._cold_start(api, apps, targets, changed, patched_at, started) if input.wait_ready and changed else []
        cold = [c.model_copy(update={"region": input.region}) for c in cold]
        return ScaleResult(region=input.region, deployments=states, changed=changed, waits=waits, cold_start=cold)

    @staticmethod
    def _cold_start(
        api: k8s.ApiClient, apps: k8s.AppsV1Api, targets: list[tuple[str, str, int]], changed: list[str],
        patched_at: dict[str, float], started: float,
    ) -> list[ColdStart]:
        """What the pods this scale started took, stage by stage, each workload's from its
        patch (a previous attempt's patch: from the inherited start). Best effort: never fails the scale."""
        out = []
        for ns, name, _ in targets:
            if f"{ns}/{name}" not in changed:
                continue
            try:
                dep = apps.read_namespaced_deployment(name, ns, _request_timeout=REQUEST_TIMEOUT)
            except api_errors():
                continue
            labels = (dep.spec.selector.match_labels or {}) if dep.spec and dep.spec.selector else {}
            if labels:
                out += read_cold_start(api, [(ns, name, labels)], patched_at.get(f"{ns}/{name}", started))
        return out

    # ------------------------------------------------------------------ rollout restart
    @activity.defn(name=contracts.KUBE_ROLLOUT_RESTART)
    def rollout_restart(self, input: RolloutRestartInput) -> RolloutRestartResult:
        """What `kubectl rollout restart deployment/D` does: patch the pod template's
        kubectl.kubernetes.io/restartedAt annotation, so the Deployment rolls new pods
        (which load the model artifacts afresh); then wait until the rollout is complete:
        every replica updated and ready, no old pod left."""
        context, api = cluster_client(self.clients, input.runbook, input.region, "restart workloads")
        apps = k8s.AppsV1Api(api)
        started = float(resume_details().get("started_at") or time.time())
        restarted: list[str] = list(resume_details().get("restarted") or [])
        workloads = [(w.namespace, w.deployment) for w in input.runbook.workloads_in(input.region)]
        for ns, name in workloads:
            dep = self._deployment(apps, input, context, ns, name)
            template = dep.spec.template if dep.spec else None
            annotations = (template.metadata.annotations if template and template.metadata else None) or {}
            if annotations.get(RESTARTED_AT) != input.restarted_at:
                self._call(
                    lambda ns=ns, name=name: apps.patch_namespaced_deployment(
                        name, ns,
                        {"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: input.restarted_at}}}}},
                        _request_timeout=REQUEST_TIMEOUT,
                    ),
                    input, context, ns, name, "patch",
                )
                started = time.time()  # the clock runs from the last patch, as in scale
                if f"{ns}/{name}" not in restarted:
                    restarted.append(f"{ns}/{name}")
            activity.heartbeat({"started_at": started, "restarted": restarted, "phase": "patched"})
        states = self._rolled_states(apps, input, context, workloads)
        deadline = started + input.timeout_seconds
        poll = max(MIN_POLL_SECONDS, self.poll_seconds / input.speed)
        wait = PolledWait("pods", input.speed, self.poll_seconds, monotonic_from_wall(started))
        while short := [s for s, done in states if not done]:
            wait.pending()
            activity.heartbeat({"started_at": started, "restarted": restarted, "phase": "waiting"})
            if time.time() >= deadline:
                targets = [(s.namespace, s.name, s.replicas) for s, _ in states]
                raise self._not_ready(api, apps, input, context, short, targets, started)
            pause(min(poll, max(0.0, deadline - time.time())))
            states = self._rolled_states(apps, input, context, workloads)
        return RolloutRestartResult(
            region=input.region, deployments=[s for s, _ in states], restarted=restarted, waits=wait.done()
        )

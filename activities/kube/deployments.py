"""Deployments as the Kubernetes activities read them: desired and ready replicas, whether a
rollout is complete, and why pods are not ready (for a PodsNotReady error that says what to
inspect)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from kubernetes import client as k8s
from temporalio.exceptions import ApplicationError

from activities.contracts import (
    DeploymentState,
    ErrorType,
    KubeReadInput,
    RolloutRestartInput,
    ScaleInput,
)
from activities.kube.clusters import (
    REQUEST_TIMEOUT,
    ClusterActivities,
    api_errors,
    classify,
)


class DeploymentReads(ClusterActivities):
    """Reading a region's Deployments one by one, every API error classified."""

    def _rolled_states(
        self, apps: k8s.AppsV1Api, input: RolloutRestartInput, context: str, workloads: list[tuple[str, str]]
    ) -> list[tuple[DeploymentState, bool]]:
        """Each deployment's state and whether its rollout is complete (as `kubectl rollout
        status` judges: observed the latest generation, all replicas updated and available,
        none of the old ones left)."""
        out = []
        for ns, name in workloads:
            dep = self._deployment(apps, input, context, ns, name)
            want = (dep.spec.replicas or 0) if dep.spec else 0
            st = dep.status
            ready = (st.ready_replicas or 0) if st else 0
            done = bool(st) and (st.observed_generation or 0) >= (dep.metadata.generation or 0) and (
                (st.updated_replicas or 0) >= want and (st.replicas or 0) <= want and (st.available_replicas or 0) >= want
            )
            out.append((DeploymentState(namespace=ns, name=name, replicas=want, ready=ready), done))
        return out

    # ------------------------------------------------------------------ pieces
    @staticmethod
    def _targets(input: ScaleInput) -> list[tuple[str, str, int]]:
        if input.to == "exact":
            targets = []
            for key, n in input.counts.items():
                ns, sep, name = key.partition("/")
                if not sep or not ns or not name or n < 0:
                    raise ApplicationError(
                        f"scale counts key {key!r} -> {n}: expected 'namespace/deployment' -> a count >= 0",
                        type=ErrorType.INVALID_INPUT,
                        non_retryable=True,
                    )
                targets.append((ns, name, n))
            return targets
        return [
            (
                w.namespace,
                w.deployment,
                w.replicas.active if input.to == "active" else w.replicas.standby,
            )
            for w in input.runbook.workloads_in(input.region)
        ]

    def _ready_states(
        self,
        apps: k8s.AppsV1Api,
        input: ScaleInput,
        context: str,
        targets: list[tuple[str, str, int]],
    ) -> list[DeploymentState]:
        return self._states(apps, input, context, [(ns, name) for ns, name, _ in targets])

    def _states(
        self,
        apps: k8s.AppsV1Api,
        input: KubeReadInput | ScaleInput,
        context: str,
        workloads: list[tuple[str, str]],
    ) -> list[DeploymentState]:
        """Desired and ready replicas of each (namespace, deployment), read one by one."""
        states = []
        for ns, name in workloads:
            dep = self._deployment(apps, input, context, ns, name)
            states.append(
                DeploymentState(
                    namespace=ns,
                    name=name,
                    replicas=(dep.spec.replicas or 0) if dep.spec else 0,
                    ready=(dep.status.ready_replicas or 0) if dep.status else 0,
                )
            )
        return states

    def _deployment(
        self,
        apps: k8s.AppsV1Api,
        input: KubeReadInput | ScaleInput | RolloutRestartInput,
        context: str,
        ns: str,
        name: str,
    ) -> Any:
        return self._call(
            lambda: apps.read_namespaced_deployment(name, ns, _request_timeout=REQUEST_TIMEOUT),
            input,
            context,
            ns,
            name,
            "get",
        )

    def _call(
        self,
        call: Callable[[], Any],
        input: KubeReadInput | ScaleInput | RolloutRestartInput,
        context: str,
        ns: str,
        name: str,
        verb: str,
    ) -> Any:
        try:
            return call()
        except api_errors() as exc:
            raise classify(
                exc,
                context=context,
                region=input.region,
                resource=f"Deployment {ns}/{name}",
                not_found_fix=(
                    f"create it there, or fix the scale block's workloads in runbook {input.runbook.name}"
                    if getattr(input, "workloads", None) or getattr(input, "to", "") == "exact"
                    else f"create it there (or restore it with Velero), or fix spec.workloads in runbook "
                    f"{input.runbook.name} (namespace, deployment, regions)"
                ),
                rbac=(
                    f"RBAC verbs get, patch on deployments and deployments/scale (group apps) in "
                    f"namespace {ns} of context {context} (needed: {verb})"
                ),
            ) from exc

    def _not_ready(
        self,
        api: k8s.ApiClient,
        apps: k8s.AppsV1Api,
        input: ScaleInput,
        context: str,
        short: list[DeploymentState],
        targets: list[tuple[str, str, int]],
        started: float,
    ) -> ApplicationError:
        # Non-retryable on purpose: the wait has used the whole budget the workflow gave it
        # (the deadline survives retries through the heartbeat), so a retry could only fail
        # again or silently stretch the RTO. Pods that do not come up in time are a capacity
        # or image problem for the workflow (and the on-call) to decide on: wait longer,
        # compensate, or abort. The scale itself is done and stays done.
        desired = {f"{ns}/{name}": n for ns, name, n in targets}
        findings, parts = [], []
        for s in short:
            key = f"{s.namespace}/{s.name}"
            pods = self._pod_summary(api, apps, s.namespace, s.name)
            findings.append(
                {"deployment": key, "ready": s.ready, "desired": desired[key], "pods": pods}
            )
            parts.append(f"{key} has {s.ready}/{desired[key]} ready ({pods})")
        waited = time.time() - started
        return ApplicationError(
            f"kube context {context} (region {input.region}): pods not ready after {waited:.1f}s: "
            + "; ".join(parts)
            + f". Inspect with `kubectl --context {context} -n {short[0].namespace} describe deployment "
            f"{short[0].name}` and its pods' events",
            {"region": input.region, "context": context, "short": findings},
            type=ErrorType.PODS_NOT_READY,
            non_retryable=True,
        )

    @staticmethod
    def _pod_summary(api: k8s.ApiClient, apps: k8s.AppsV1Api, ns: str, name: str) -> str:
        """What the short deployment's pods are doing, e.g. '1 ready, 5 Pending (Unschedulable: ...)'."""
        try:
            dep = apps.read_namespaced_deployment(name, ns, _request_timeout=REQUEST_TIMEOUT)
            labels = (
                (dep.spec.selector.match_labels or {}) if dep.spec and dep.spec.selector else {}
            )
            selector = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
            pods = (
                k8s.CoreV1Api(api)
                .list_namespaced_pod(ns, label_selector=selector, _request_timeout=REQUEST_TIMEOUT)
                .items
            )
            progressing = (
                next((c for c in (dep.status.conditions or []) if c.type == "Progressing"), None)
                if dep.status
                else None
            )
        except api_errors() as exc:
            return f"pods could not be listed: {type(exc).__name__}"
        counts: dict[str, int] = {}
        for pod in pods:
            status = pod.status
            ready = (
                any(c.type == "Ready" and c.status == "True" for c in (status.conditions or []))
                if status
                else False
            )
            if ready:
                state = "ready"
            else:
                state = (status.phase or "Unknown") if status else "Unknown"
                unscheduled = (
                    next(
                        (
                            c
                            for c in (status.conditions or [])
                            if c.type == "PodScheduled" and c.status == "False"
                        ),
                        None,
                    )
                    if status
                    else None
                )
                waiting = (
                    next(
                        (
                            cs.state.waiting
                            for cs in (status.container_statuses or [])
                            if cs.state and cs.state.waiting
                        ),
                        None,
                    )
                    if status
                    else None
                )
                if unscheduled is not None:
                    state += f" ({unscheduled.reason}: {unscheduled.message})"
                elif waiting is not None:
                    state += f" ({waiting.reason})"
            counts[state] = counts.get(state, 0) + 1
        text = ", ".join(f"{n} {state}" for state, n in sorted(counts.items())) or "no pods"
        if progressing is not None and progressing.status == "False":
            text += f"; {progressing.reason}: {progressing.message}"
        return text

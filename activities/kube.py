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

import json
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Self

import urllib3
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException
from temporalio import activity
from temporalio.exceptions import ApplicationError, CancelledError

from activities import contracts
from activities.contracts import (
    DeploymentState,
    ErrorType,
    KubeReadInput,
    ReplicaState,
    RolloutRestartInput,
    RolloutRestartResult,
    ScaledWait,
    ScaleInput,
    ScaleResult,
)
from activities.credentials import Signature, files_signature
from activities.waits import PolledWait
from drpilot.domain.runbook import Runbook
from drpilot.domain.settings import Settings


def _monotonic(wall: float) -> float:
    """`wall` (time.time(), as kept in heartbeat details) on the monotonic clock."""
    return time.monotonic() - (time.time() - wall)


# Simulated seconds between readiness polls (divided by the input's speed), and a floor
# so a high rehearsal speed does not hammer the API.
POLL_SECONDS = 2.0
# The pod-template annotation `kubectl rollout restart` sets; changing it rolls new pods.
RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"
MIN_POLL_SECONDS = 0.02
# (connect, read) seconds for each API call: a hung cluster must not hang the activity.
REQUEST_TIMEOUT = (5.0, 30.0)


# ------------------------------------------------------------------------------- clients
class KubeconfigClients(Mapping[str, k8s.ApiClient]):
    """One `kubernetes` ApiClient per kubeconfig context, built on first use and rebuilt
    when the kubeconfig file changes on disk.

    KUBECONFIG may list several files (':'-separated), as kubectl allows; a context the
    kubeconfig lacks is a KeyError the activities turn into a clear, non-retryable error.
    """

    def __init__(self, config_file: str | None = None):
        self.config_file = config_file or os.path.expanduser("~/.kube/config")
        self._clients: dict[str, k8s.ApiClient] = {}
        self._signature: Signature = ()
        self._lock = threading.Lock()

    def _contexts(self) -> list[str]:
        try:
            contexts, _ = k8s_config.list_kube_config_contexts(config_file=self.config_file)
        except (ConfigException, OSError):
            return []
        return [c["name"] for c in contexts or []]

    def __getitem__(self, context: str) -> k8s.ApiClient:
        with self._lock:
            # A rotated kubeconfig (a new token or certificate; a Secret volume swaps the file
            # in place) replaces every client built from the old one, without a restart.
            signature = files_signature(self.config_file.split(os.pathsep))
            if signature != self._signature:
                self._clients.clear()
                self._signature = signature
            if context not in self._clients:
                if context not in self._contexts():
                    raise KeyError(context)
                self._clients[context] = k8s_config.new_client_from_config(
                    config_file=self.config_file, context=context, persist_config=False
                )
            return self._clients[context]

    def __iter__(self) -> Iterator[str]:
        return iter(self._contexts())

    def __len__(self) -> int:
        return len(self._contexts())


def cluster_client(
    clients: Mapping[str, k8s.ApiClient], runbook: Runbook, region: str, where: str
) -> tuple[str, k8s.ApiClient]:
    """The (context, client) of a runbook region, or a non-retryable error saying what to fix."""
    spec = runbook.regions.get(region)
    if spec is None:
        raise ApplicationError(
            f"region {region!r} is not in runbook {runbook.name} (regions: {', '.join(runbook.regions)})",
            type=ErrorType.UNKNOWN_REGION,
            non_retryable=True,
        )
    context = spec.kube.context
    try:
        return context, clients[context]
    except KeyError:
        source = getattr(clients, "config_file", "the injected clients")
        raise ApplicationError(
            f"kube context {context!r} (region {region}, needed to {where}) is not in the kubeconfig "
            f"({source}); add that context or fix spec.regions.{region}.kube.context in runbook {runbook.name}",
            type=ErrorType.KUBE_CONTEXT_MISSING,
            non_retryable=True,
        ) from None
    except (ConfigException, OSError) as exc:
        raise ApplicationError(
            f"kube context {context!r} (region {region}) cannot be loaded from the kubeconfig: {exc}",
            type=ErrorType.KUBE_CONFIG_INVALID,
            non_retryable=True,
        ) from None


def server_message(exc: ApiException) -> str:
    try:
        return str(json.loads(exc.body or "")["message"])
    except (ValueError, KeyError, TypeError):
        return (exc.reason or "").strip() or f"HTTP {exc.status}"


def classify(
    exc: BaseException, *, context: str, region: str, resource: str, not_found_fix: str, rbac: str
) -> ApplicationError:
    """An API failure as the caller should treat it: retry transient ones, stop on the rest.

    `resource` names what was being touched (e.g. "Deployment ml-serving/inference-service"),
    `not_found_fix` and `rbac` are the fixes a 404 and a 403 call for.
    """
    where = f"kube context {context} (region {region})"
    if isinstance(exc, ApiException):
        status, text = exc.status or 0, server_message(exc)
        if status == 404:
            return ApplicationError(
                f"{resource} not found in {where}: {not_found_fix}",
                type=ErrorType.KUBE_NOT_FOUND,
                non_retryable=True,
            )
        if status == 401:
            return ApplicationError(
                f"{where} rejected drpilot's credentials (401 Unauthorized) on {resource}; refresh the "
                f"kubeconfig user of context {context} (token, client certificate or exec plugin) and retry",
                type=ErrorType.KUBE_UNAUTHORIZED,
                non_retryable=True,
            )
        if status == 403:
            return ApplicationError(
                f"{where}: {text}; grant drpilot's identity {rbac}",
                type=ErrorType.KUBE_FORBIDDEN,
                non_retryable=True,
            )
        if status in (400, 415, 422):
            return ApplicationError(
                f"{where} refused the request on {resource} ({status}): {text}",
                type=ErrorType.KUBE_INVALID,
                non_retryable=True,
            )
        if status == 409:
            return ApplicationError(
                f"{where}: conflict on {resource}, will re-read and retry: {text}",
                type=ErrorType.KUBE_CONFLICT,
            )
        if status == 429:
            return ApplicationError(
                f"{where} is throttling requests on {resource}: {text}", type=ErrorType.KUBE_THROTTLED
            )
        return ApplicationError(
            f"{where} answered {status} on {resource}: {text}", type=ErrorType.KUBE_UNAVAILABLE
        )
    reason = getattr(exc, "reason", None)
    if isinstance(exc, urllib3.exceptions.SSLError) or isinstance(
        reason, urllib3.exceptions.SSLError
    ):
        return ApplicationError(
            f"{where}: TLS verification failed on {resource}: {reason or exc}; check the cluster's "
            f"certificate-authority-data / server URL for context {context}",
            type=ErrorType.KUBE_TLS,
            non_retryable=True,
        )
    return ApplicationError(
        f"{where} is unreachable ({type(exc).__name__}: {exc}) on {resource}",
        type=ErrorType.KUBE_UNREACHABLE,
    )


def api_errors() -> tuple[type[BaseException], ...]:
    return (ApiException, urllib3.exceptions.HTTPError, OSError)


def resume_details() -> dict[str, Any]:
    """The last heartbeat of a previous attempt of this activity (empty on the first)."""
    details = activity.info().heartbeat_details
    if details and isinstance(details[-1], dict):
        return dict(details[-1])
    return {}


def pause(seconds: float) -> None:
    """Sleep between polls, waking at once when the activity is cancelled."""
    if activity.wait_for_cancelled_sync(timeout=max(0.0, seconds)) or activity.is_cancelled():
        raise CancelledError("activity cancelled while waiting")


# ---------------------------------------------------------------------------- activities
class ClusterActivities:
    """What the Kubernetes and the Velero activities share: one API client per kubeconfig
    context, and how often they poll (simulated seconds, divided by the speed)."""

    default_poll_seconds = POLL_SECONDS

    def __init__(self, clients: Mapping[str, k8s.ApiClient], *, poll_seconds: float | None = None):
        self.clients = clients
        self.poll_seconds = self.default_poll_seconds if poll_seconds is None else poll_seconds

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        # Read KUBECONFIG now: the kubernetes package captures it at import time, which is
        # too early for `source DIR/env` shells and test fixtures.
        return cls(KubeconfigClients(os.environ.get("KUBECONFIG")))


class KubeActivities(ClusterActivities):
    def all(self) -> list[Callable[..., Any]]:
        return [self.read, self.scale, self.rollout_restart]

    # ------------------------------------------------------------------ read
    @activity.defn(name=contracts.KUBE_READ)
    def read(self, input: KubeReadInput) -> ReplicaState:
        context, api = cluster_client(
            self.clients, input.runbook, input.region, "read replica counts"
        )
        workloads = [(w.namespace, w.deployment) for w in input.runbook.workloads_in(input.region)]
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
            wait = PolledWait("pods", input.speed, self.poll_seconds, _monotonic(started))
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
        return ScaleResult(region=input.region, deployments=states, changed=changed, waits=waits)

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
        wait = PolledWait("pods", input.speed, self.poll_seconds, _monotonic(started))
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
                    f"create it there (or restore it with Velero), or fix spec.workloads in runbook "
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

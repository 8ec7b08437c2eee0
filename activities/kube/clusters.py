"""A region's Kubernetes cluster as the activities reach it: one client per kubeconfig context
(rebuilt when the kubeconfig changes on disk), the runbook's region -> context mapping, every
API error classified for the caller, and the heartbeat and poll helpers the Kubernetes and the
Velero activities share."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator, Mapping
from typing import Any, Self

import urllib3
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException
from temporalio import activity
from temporalio.exceptions import ApplicationError, CancelledError

from activities.contracts import (
    ErrorType,
)
from activities.credentials import Signature, files_signature
from drpilot.domain.runbook import Runbook
from drpilot.domain.settings import Settings


def monotonic_from_wall(wall: float) -> float:
    """`wall` (time.time(), as kept in heartbeat details) on the monotonic clock."""
    return time.monotonic() - (time.time() - wall)


# The API classes the activities build. The client package imports each one's module on first
# use (CoreV1Api's alone costs about 0.4 s of CPU): loaded when the worker builds its
# activities, so that cost is not paid inside the first run's activities after a worker starts
# (a replacement worker started in the middle of an outage included).
API_CLASSES = ("CoreV1Api", "AppsV1Api", "BatchV1Api", "CustomObjectsApi")


def load_api_classes() -> None:
    for name in API_CLASSES:
        getattr(k8s, name)


# Simulated seconds between readiness polls (divided by the input's speed), and a floor
# so a high rehearsal speed does not hammer the API.
POLL_SECONDS = 2.0
# The pod-template annotation `kubectl rollout restart` sets; changing it rolls new pods.
RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"
MIN_POLL_SECONDS = 0.02
# (connect, read) seconds for each API call: a hung cluster must not hang the activity (the
# worker keeps a running activity heartbeating, drpilot/frontdoor/keepalive.py, so only a
# bounded call lets a retry or the activity's own deadline take over).
REQUEST_TIMEOUT = (5.0, 30.0)


class BoundedApiClient(k8s.ApiClient):
    """An ApiClient whose every call has a timeout: the `kubernetes` client passes none to
    urllib3 unless the call sets `_request_timeout`, and then waits on a socket for ever."""

    def call_api(self, method, url, header_params=None, body=None, post_params=None, _request_timeout=None):
        return super().call_api(
            method, url, header_params=header_params, body=body, post_params=post_params,
            _request_timeout=_request_timeout or REQUEST_TIMEOUT,
        )


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
                configuration = type.__call__(k8s.Configuration)  # not the process-wide default
                k8s_config.load_kube_config(
                    config_file=self.config_file, context=context, client_configuration=configuration,
                    persist_config=False,
                )
                self._clients[context] = BoundedApiClient(configuration=configuration)
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
    return spec.kube.context, context_client(
        clients, spec.kube.context, region, where, f"spec.regions.{region}.kube.context in runbook {runbook.name}"
    )


def context_client(
    clients: Mapping[str, k8s.ApiClient], context: str, region: str, where: str, named_in: str
) -> k8s.ApiClient:
    """The client of a kubeconfig context, or a non-retryable error saying what to fix
    (`named_in`: where the context's name comes from)."""
    try:
        return clients[context]
    except KeyError:
        source = getattr(clients, "config_file", "the injected clients")
        raise ApplicationError(
            f"kube context {context!r} (region {region}, needed to {where}) is not in the kubeconfig "
            f"({source}); add that context or fix {named_in}",
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
        # status -> (what the caller is told, error type, whether a retry can help)
        answers = {
            404: (f"{resource} not found in {where}: {not_found_fix}", ErrorType.KUBE_NOT_FOUND, False),
            401: (
                f"{where} rejected drpilot's credentials (401 Unauthorized) on {resource}; refresh the "
                f"kubeconfig user of context {context} (token, client certificate or exec plugin) and retry",
                ErrorType.KUBE_UNAUTHORIZED, False,
            ),
            403: (f"{where}: {text}; grant drpilot's identity {rbac}", ErrorType.KUBE_FORBIDDEN, False),
            409: (f"{where}: conflict on {resource}, will re-read and retry: {text}", ErrorType.KUBE_CONFLICT, True),
            429: (f"{where} is throttling requests on {resource}: {text}", ErrorType.KUBE_THROTTLED, True),
        }
        for invalid in (400, 415, 422):
            answers[invalid] = (
                f"{where} refused the request on {resource} ({status}): {text}", ErrorType.KUBE_INVALID, False,
            )
        message, kind, retryable = answers.get(
            status, (f"{where} answered {status} on {resource}: {text}", ErrorType.KUBE_UNAVAILABLE, True)
        )
        return ApplicationError(message, type=kind, non_retryable=not retryable)
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

"""What a cluster holds, read for the capacity check: nodes, the pods on them, the pod
templates of the runbook's Deployments and what its autoscaler may add.

Lists are paginated (limit / continue, as `kubectl get` does in chunks of 500): a region of
500 nodes and 2,000 pods is a handful of requests, never one per node. Bodies are read as
JSON, not through the client's model classes, which cost more than the request itself on
thousands of pods. A cluster without Karpenter (no NodePool API: 404) or without the
Cluster Autoscaler (no status ConfigMap) simply has no such headroom.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from activities.kube.capacity import Obj
from activities.kube.clusters import REQUEST_TIMEOUT

PAGE = 500
AUTOSCALER_STATUS = ("kube-system", "cluster-autoscaler-status")


@dataclass
class Inventory:
    nodes: list[Obj] = field(default_factory=list)
    pods: list[Obj] = field(default_factory=list)
    templates: dict[str, Obj] = field(default_factory=dict)  # namespace/name -> Deployment
    nodepools: list[Obj] | None = None  # None: no Karpenter
    autoscaler: str | None = None  # the Cluster Autoscaler's status text, when it runs
    requests: int = 0


class InventoryReader:
    """Reads one cluster; every call counted, ApiExceptions left to the caller to classify."""

    def __init__(self, api: k8s.ApiClient):
        self.core, self.apps, self.custom = k8s.CoreV1Api(api), k8s.AppsV1Api(api), k8s.CustomObjectsApi(api)
        self.requests = 0

    def _json(self, call: Callable[..., Any], *args: Any, **kwargs: Any) -> Obj:
        self.requests += 1
        response = call(*args, _preload_content=False, _request_timeout=REQUEST_TIMEOUT, **kwargs)
        return json.loads(response.data)

    def _paged(self, call: Callable[..., Any], *args: Any, **kwargs: Any) -> list[Obj]:
        items: list[Obj] = []
        token = ""
        while True:
            page = self._json(call, *args, limit=PAGE, _continue=token or None, **kwargs)
            items += page.get("items") or []
            token = (page.get("metadata") or {}).get("continue") or ""
            if not token:
                return items

    def read(self, workloads: list[tuple[str, str]]) -> Inventory:
        found = Inventory()
        found.nodes = self._paged(self.core.list_node)
        # Every pod on the nodes counts against them, whatever its namespace.
        found.pods = self._paged(self.core.list_pod_for_all_namespaces, field_selector="status.phase!=Succeeded")
        for ns, name in workloads:
            found.templates[f"{ns}/{name}"] = self._json(self.apps.read_namespaced_deployment, name, ns)
        try:
            found.nodepools = self._paged(self.custom.list_cluster_custom_object, "karpenter.sh", "v1", "nodepools")
        except ApiException as exc:
            if exc.status != 404:
                raise
        try:
            cm = self._json(self.core.read_namespaced_config_map, AUTOSCALER_STATUS[1], AUTOSCALER_STATUS[0])
            found.autoscaler = (cm.get("data") or {}).get("status")
        except ApiException as exc:
            if exc.status != 404:
                raise
        found.requests = self.requests
        return found

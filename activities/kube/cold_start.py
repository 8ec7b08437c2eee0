"""Cold start, measured: from a scale request to the new pods scheduled, their images pulled,
containers started and ready, read from what the cluster recorded (pod conditions'
lastTransitionTime, containerStatuses' startedAt, the kubelet's Pulled events).

Best effort by design: a measurement that cannot be read (no permission to list events,
events already expired: the API server keeps them one hour by default) leaves that stage
None and never fails the scale it describes.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from kubernetes import client as k8s

from activities.contracts import ColdStart
from activities.kube.clusters import REQUEST_TIMEOUT, api_errors

Obj = dict[str, Any]
PAGE = 500


def moment(text: str | None) -> float | None:
    """An RFC 3339 time (with or without fractions) as epoch seconds."""
    if not text:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _condition(pod: Obj, kind: str) -> float | None:
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if cond.get("type") == kind and cond.get("status") == "True":
            return moment(cond.get("lastTransitionTime"))
    return None


def _started(pod: Obj) -> float | None:
    times = [
        moment(((cs.get("state") or {}).get("running") or {}).get("startedAt"))
        for cs in (pod.get("status") or {}).get("containerStatuses") or []
    ]
    return max((t for t in times if t is not None), default=None)


def measure(workload: str, requested: float, pods: list[Obj], events: list[Obj]) -> ColdStart:
    """The stages of the pods the scale at `requested` (epoch seconds) started: created at or
    after it, and not already ready by then. Timestamps keep whole seconds, so a pod created
    in the same second just before is told apart by having been ready already."""

    def started_by_scale(pod: Obj) -> bool:
        created = moment(pod["metadata"].get("creationTimestamp")) or 0
        ready = _condition(pod, "Ready")
        return created >= int(requested) and not (ready is not None and ready <= requested)

    new = [p for p in pods if started_by_scale(p)]
    pulled: dict[str, float] = {}
    for e in events:
        name = (e.get("involvedObject") or {}).get("name", "")
        at = moment(e.get("eventTime") or e.get("lastTimestamp"))
        if e.get("reason") == "Pulled" and at is not None:
            pulled[name] = max(pulled.get(name, 0.0), at)

    def last(times: list[float | None]) -> float | None:
        if not times or any(t is None for t in times):
            return None
        return round(max(0.0, max(t for t in times if t is not None) - requested), 3)

    stages = [
        last([_condition(p, "PodScheduled") for p in new]),
        last([pulled.get(p["metadata"]["name"]) for p in new]),
        last([_started(p) for p in new]),
        last([_condition(p, "Ready") for p in new]),
    ]
    # Conditions and startedAt keep whole seconds, events microseconds: a stage stamped in the
    # second its predecessor happened reads as earlier than it. None is: raise it to it.
    latest = 0.0
    for i, seconds in enumerate(stages):
        if seconds is not None:
            stages[i] = latest = max(seconds, latest)
    scheduled, pulled_at, started, ready = stages
    return ColdStart(
        workload=workload, pods=len(new), scheduled=scheduled, pulled=pulled_at, started=started, ready=ready,
        requested_at=requested,
    )


def read_cold_start(api: k8s.ApiClient, workloads: list[tuple[str, str, dict[str, str]]], requested: float) -> list[ColdStart]:
    """Per (namespace, deployment, its selector's labels): the cold start of its new pods."""
    core = k8s.CoreV1Api(api)
    out, events_of = [], {}
    for ns, name, labels in workloads:
        selector = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
        try:
            pods = json.loads(core.list_namespaced_pod(
                ns, label_selector=selector, _preload_content=False, _request_timeout=REQUEST_TIMEOUT
            ).data).get("items") or []
            if ns not in events_of:
                events_of[ns] = _events(core, ns)
        except api_errors():
            continue
        measured = measure(f"{ns}/{name}", requested, pods, events_of[ns])
        if measured.pods:
            out.append(measured)
    return out


def _events(core: k8s.CoreV1Api, ns: str) -> list[Obj]:
    items, token = [], None
    while True:
        page = json.loads(core.list_namespaced_event(
            ns, limit=PAGE, _continue=token, _preload_content=False, _request_timeout=REQUEST_TIMEOUT
        ).data)
        items += page.get("items") or []
        token = (page.get("metadata") or {}).get("continue")
        if not token:
            return items

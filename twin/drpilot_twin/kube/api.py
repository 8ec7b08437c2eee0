"""One Kubernetes API emulator per region: what the `kubernetes` client and kubectl talk to.

No kube-apiserver can be installed on the machines drpilot is rehearsed on
(docs/architecture.md, "The sandbox twin"), so each region's cluster is this HTTP server
on 127.0.0.1, reached through a generated
kubeconfig whose context names are the runbook's. It speaks the parts of the API drpilot
and an on-call engineer use: discovery, namespaces, apps/v1 Deployments (with the `scale`
and `status` subresources and all three patch types), read-only Pods, and Velero's
`velero.io/v1` Backup and Restore objects, batch/v1 Jobs with their pods' logs (pods/log);
bearer-token auth with per-user verbs (so 401 and 403 are real answers); the Table form
`kubectl get` prints. Controllers bring pods to ready over simulated time, move Restores
through Velero's phases (controllers.py) and run Jobs to completion (jobs.py).

Faults come from the FaultBoard on every request: a region in `region_down` answers 503
to everything, `gpu_free` / `pods_stalled` / `quota` / `node_provision_seconds` decide where
and when pods can run, `image_missing` / `pod_start_seconds` shape their start, and
`velero_failed` / `velero_partially_failed` decide how Restores end.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import json
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import yaml

from drpilot.domain.runbook import Role, Runbook, Velero
from drpilot_twin.aws.ecr import workload_image
from drpilot_twin.faults import FaultBoard
from drpilot_twin.kube.controllers import (
    SCHEDULE_LABEL,
    DeploymentController,
    VeleroController,
    random_name_suffix,
)
from drpilot_twin.kube.jobs import JobController, prepare_job
from drpilot_twin.kube.objects import (
    BACKUPS,
    DEPLOYMENTS,
    JOBS,
    NAMESPACES,
    RESOURCE_TYPES,
    RESTORES,
    SCHEDULES,
    KubeError,
    Obj,
    ResourceType,
    Store,
    api_group_list,
    apply_patch,
    bad_request,
    conflict,
    invalid,
    not_found,
    parse_field_selector,
    parse_label_selector,
    resource_list,
    resource_type,
    selector_string,
    table,
    timestamp,
    validate_name,
)
from drpilot_twin.kube.scheduling import GPU, NodeShape, reserve_gpus, seed_nodes
from drpilot_twin.kube.tls import sandbox_tls
from drpilot_twin.loopback import LoopbackServer

# Simulated seconds (divided by the twin's speed). A GPU inference pod pulling a large
# image and loading weights takes tens of seconds to minutes; 30 s keeps rehearsals honest.
DEFAULT_POD_START_SECONDS = 30.0
DEFAULT_VELERO_RESTORE_SECONDS = 20.0
KUBE_VERSION = {
    "major": "1",
    "minor": "32",
    "gitVersion": "v1.32.0-drpilot-sandbox",
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2025-01-01T00:00:00Z",
    "goVersion": "go1.23.0",
    "compiler": "gc",
    "platform": "linux/amd64",
}
ALL_VERBS = frozenset(
    {"get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"}
)
READ_VERBS = frozenset({"get", "list", "watch"})


@dataclass(frozen=True)
class User:
    name: str
    verbs: frozenset[str]


@dataclass
class _Watch:
    rt: ResourceType
    namespace: str
    matches: Callable[[Obj], bool]
    since: int | None  # resourceVersion to follow from; None = list current objects first
    timeout: float


@dataclass
class _Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        try:
            return json.loads(self.body or b"null")
        except ValueError as exc:
            raise bad_request(f"the request body is not JSON: {exc}") from None


class KubeCluster:
    """A region's Kubernetes API (HTTP, 127.0.0.1) with its pod and Velero controllers."""

    def __init__(
        self,
        region: str,
        board: FaultBoard,
        speed: float = 1.0,
        *,
        context: str | None = None,
        port: int = 0,
        pod_start_seconds: float = DEFAULT_POD_START_SECONDS,
        velero_restore_seconds: float = DEFAULT_VELERO_RESTORE_SECONDS,
        nodes: NodeShape | None = None,
    ):
        if speed <= 0:
            raise ValueError("speed must be > 0")
        self.region = region
        self.board = board
        self.speed = speed
        self.context = context or f"sandbox-{region}"
        self.store = Store()
        self.deployments = DeploymentController(self.store, board, region, speed, pod_start_seconds)
        self.velero = VeleroController(self.store, board, region, speed, velero_restore_seconds)
        self.jobs = JobController(self.store, board, speed)
        # The kubeconfig user: full rights. add_user() makes narrower ones (403 rehearsals).
        self.token = secrets.token_hex(16)
        self._users: dict[str, User] = {self.token: User("drpilot", ALL_VERBS)}
        self.tls = sandbox_tls()
        self._server = LoopbackServer(
            self._asgi, port, f"kube-api-{region}", lifespan="off", tls=self.tls.server_context
        )
        self._stop = threading.Event()
        self._controller: threading.Thread | None = None
        for ns in ("default", "kube-system", "kube-public"):
            self.ensure_namespace(ns)
        with self.store.lock:
            seed_nodes(self.store, region, nodes or NodeShape())

    # ------------------------------------------------------------------ lifecycle
    @property
    def url(self) -> str:
        return self._server.url

    def start(self) -> KubeCluster:
        if self._controller is not None:
            return self
        self._stop.clear()
        self._controller = threading.Thread(
            target=self._control_loop, name=f"kube-controllers-{self.region}", daemon=True
        )
        self._controller.start()
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()
        self._stop.set()
        self.store.changed.set()
        if self._controller is not None:
            self._controller.join(timeout=10)
            self._controller = None

    def __enter__(self) -> KubeCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _control_loop(self) -> None:
        # A pass runs when the store or the fault board changed, or a timer (a pod turning
        # ready, a Restore phase ending) is due; an idle cluster costs next to nothing.
        seen: tuple[int, object] | None = None
        due: float | None = None
        while not self._stop.is_set():
            now = time.monotonic()
            state = (self.store.revision, self.board.now)
            if state != seen or (due is not None and now >= due):
                seen = state  # taken before the pass, so the pass's own writes get one more look
                wakes = [
                    w
                    for w in (self.deployments.reconcile(now), self.velero.reconcile(now), self.jobs.reconcile(now))
                    if w is not None
                ]
                due = min(wakes, default=None)
            # Faults change without a write to the store, so look again at least every 50 ms.
            timeout = 0.05 if due is None else min(0.05, max(0.0, due - time.monotonic()))
            self.store.changed.wait(timeout)
            self.store.changed.clear()

    # ------------------------------------------------------------------ direct access
    def add_user(self, name: str, verbs: Iterable[str] = READ_VERBS) -> str:
        """A user allowed only `verbs` (e.g. read-only); returns its bearer token."""
        token = secrets.token_hex(16)
        self._users[token] = User(name, frozenset(verbs))
        return token

    def revoke(self, token: str) -> None:
        """The token stops working, as a deleted ServiceAccount token Secret or an expired
        token does: the API server answers 401 Unauthorized to every request carrying it."""
        self._users.pop(token, None)

    def ready_replicas(self, namespace: str, name: str) -> int:
        """Ready pods of a Deployment right now (0 when it does not exist)."""
        dep = self.store.get(DEPLOYMENTS, namespace, name)
        return int((dep or {}).get("status", {}).get("readyReplicas", 0))

    def deployment(self, namespace: str, name: str) -> Obj | None:
        return self.store.get(DEPLOYMENTS, namespace, name)

    def restore(self, namespace: str, name: str) -> Obj | None:
        return self.store.get(RESTORES, namespace, name)

    def ensure_namespace(self, name: str) -> None:
        with self.store.lock:
            if self.store.get(NAMESPACES, "", name) is None:
                self.create(NAMESPACES, {"metadata": {"name": name}})

    def create(self, rt: ResourceType, obj: Obj) -> Obj:
        """Create an object with the API's defaulting and validation (seeding uses this)."""
        with self.store.lock:
            return self._create(rt, copy.deepcopy(obj))

    def settle(self) -> None:
        """Every pod ready now (seed time: the region was already running)."""
        # `gpu_free` is what is free once the seeded pods run: they go first.
        with self.store.lock:
            reserve_gpus(self.store, None)
            self.deployments.reconcile(time.monotonic(), instant=True)
            self.deployments.reconcile(time.monotonic(), instant=True)
            self.deployments.share_gpus(again=True)

    # ------------------------------------------------------------------ HTTP (ASGI)
    async def _asgi(self, scope: dict, receive, send) -> None:
        if scope["type"] != "http":
            return
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        request = _Request(
            method=scope["method"],
            path=scope["path"].rstrip("/") or "/",
            query={k: v[-1] for k, v in parse_qs(scope.get("query_string", b"").decode()).items()},
            headers={k.decode().lower(): v.decode() for k, v in scope["headers"]},
            body=b"".join(chunks),
        )
        status, payload = self.handle(request)
        if isinstance(payload, _Watch):
            await self._stream(payload, receive, send)
            return
        if isinstance(payload, str):
            body, content_type = payload.encode(), "text/plain; charset=utf-8"
        else:
            body, content_type = json.dumps(payload).encode(), "application/json"
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", content_type.encode()),
                    (b"content-length", str(len(body)).encode()),
                    (b"cache-control", b"no-cache, private"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def _stream(self, watch: _Watch, receive, send) -> None:
        """A watch: one JSON event per line, until its timeout, the client leaves or we stop."""
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"cache-control", b"no-cache, private"),
                ],
            }
        )
        gone = asyncio.Event()

        async def notice_disconnect() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            gone.set()

        listener = asyncio.create_task(notice_disconnect())

        async def emit(kind: str, obj: Obj) -> None:
            line = json.dumps({"type": kind, "object": obj}) + "\n"
            await send({"type": "http.response.body", "body": line.encode(), "more_body": True})

        try:
            with self.store.lock:
                if watch.since is None:
                    last = self.store.revision
                    initial = [
                        o
                        for o in self.store.items(watch.rt, watch.namespace or None)
                        if watch.matches(o)
                    ]
                else:
                    last, initial = watch.since, []
            for obj in initial:
                await emit("ADDED", obj)
            deadline = time.monotonic() + watch.timeout
            while not gone.is_set() and not self._stop.is_set() and time.monotonic() < deadline:
                if self.region in self.board.now.region_down:
                    break  # the connection drops with the region
                with self.store.lock:
                    events = self.store.events_since(last)
                if events is None:
                    await emit(
                        "ERROR",
                        KubeError(
                            410,
                            "Expired",
                            f"too old resource version: {last} ({self.store.events[0][0]})",
                        ).status(),
                    )
                    break
                for revision, kind, plural, namespace, obj in events:
                    last = revision
                    if (
                        plural == watch.rt.plural
                        and (not watch.namespace or namespace == watch.namespace)
                        and watch.matches(obj)
                    ):
                        await emit(kind, obj)
                await asyncio.sleep(0.05)
        finally:
            listener.cancel()
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    def handle(self, request: _Request) -> tuple[int, Obj | str | _Watch]:
        if self.region in self.board.now.region_down:
            return 503, KubeError(
                503,
                "ServiceUnavailable",
                f"the server is currently unable to handle the request (region "
                f"{self.region} is down)",
            ).status()
        try:
            return self._route(request)
        except KubeError as exc:
            return exc.code, exc.status()

    def _route(self, request: _Request) -> tuple[int, Obj | str]:
        path = request.path
        if path in ("/healthz", "/livez", "/readyz"):
            return 200, "ok"
        if path == "/version":
            return 200, KUBE_VERSION
        user = self._authenticate(request)
        parts = [p for p in path.split("/") if p]
        if parts == ["api"]:
            return 200, {
                "kind": "APIVersions",
                "versions": ["v1"],
                "serverAddressByClientCIDRs": [
                    {"clientCIDR": "0.0.0.0/0", "serverAddress": self.url.removeprefix("https://")}
                ],
            }
        if parts == ["apis"]:
            return 200, api_group_list()
        if parts[:1] == ["api"] and len(parts) >= 2:
            group, version, rest = "", parts[1], parts[2:]
        elif parts[:1] == ["apis"] and len(parts) >= 3:
            group, version, rest = parts[1], parts[2], parts[3:]
        elif parts[:1] == ["apis"] and len(parts) == 2:
            listing = api_group_list()["groups"]
            found = next((g for g in listing if g["name"] == parts[1]), None)
            if found is None:
                raise KubeError(404, "NotFound", "the server could not find the requested resource")
            return 200, {"kind": "APIGroup", "apiVersion": "v1", **found}
        else:
            raise KubeError(404, "NotFound", "the server could not find the requested resource")
        api_version = f"{group}/{version}" if group else version
        if not rest:
            found = resource_list(api_version)
            if not found["resources"]:
                raise KubeError(404, "NotFound", "the server could not find the requested resource")
            return 200, found
        namespace = ""
        if rest[0] == "namespaces" and len(rest) >= 3:
            candidate = resource_type(group, version, rest[2])
            if candidate is not None and candidate.namespaced:
                namespace, rest = rest[1], rest[2:]
        rt = resource_type(group, version, rest[0])
        if rt is None or len(rest) > 3:
            raise KubeError(404, "NotFound", "the server could not find the requested resource")
        name = rest[1] if len(rest) > 1 else ""
        sub = rest[2] if len(rest) > 2 else ""
        if sub and sub not in rt.subresources:
            raise KubeError(404, "NotFound", "the server could not find the requested resource")
        if rt.namespaced and name and not namespace:
            raise KubeError(404, "NotFound", "the server could not find the requested resource")
        verb = self._verb(request.method, name, request.query)
        self._authorize(user, verb, rt, namespace, name, sub)
        with self.store.lock:
            return self._serve(request, rt, namespace, name, sub, verb)

    # ------------------------------------------------------------------ auth
    def _authenticate(self, request: _Request) -> User:
        header = request.headers.get("authorization", "")
        token = header[7:].strip() if header.lower().startswith("bearer ") else ""
        user = self._users.get(token)
        if user is None:
            raise KubeError(401, "Unauthorized", "Unauthorized")
        return user

    @staticmethod
    def _verb(method: str, name: str, query: dict[str, str]) -> str:
        if method == "GET":
            if query.get("watch") in ("1", "true"):
                return "watch"
            return "get" if name else "list"
        verbs = {"POST": "create", "PUT": "update", "PATCH": "patch"}
        if method in verbs:
            return verbs[method]
        if method == "DELETE":
            return "delete" if name else "deletecollection"
        raise KubeError(
            405,
            "MethodNotAllowed",
            f"the server does not allow this method on the requested resource ({method})",
        )

    def _authorize(
        self, user: User, verb: str, rt: ResourceType, namespace: str, name: str, sub: str
    ) -> None:
        if verb in user.verbs:
            return
        what = f'{rt.qualified} "{name}"' if name else rt.qualified
        where = f' in the namespace "{namespace}"' if namespace else " at the cluster scope"
        resource = f"{rt.plural}/{sub}" if sub else rt.plural
        raise KubeError(
            403,
            "Forbidden",
            f'{what} is forbidden: User "{user.name}" cannot {verb} resource "{resource}" in API group '
            f'"{rt.group}"{where}',
            rt.details(name),
        )

    # ------------------------------------------------------------------ verbs
    def _serve(
        self, request: _Request, rt: ResourceType, namespace: str, name: str, sub: str, verb: str
    ) -> tuple[int, Obj | _Watch]:
        dry_run = "dryRun" in request.query
        if verb == "watch":
            labels = parse_label_selector(request.query.get("labelSelector"))
            fields = parse_field_selector(request.query.get("fieldSelector"))
            since = request.query.get("resourceVersion", "")
            if since not in ("", "0") and not since.isdigit():
                raise bad_request(f"invalid resourceVersion {since!r}")
            return 200, _Watch(
                rt=rt,
                namespace=namespace,
                matches=lambda o: (
                    (not name or o["metadata"]["name"] == name)
                    and labels(o["metadata"].get("labels") or {})
                    and fields(o)
                ),
                # "" / "0": start with the current objects as ADDED, as the API server does.
                since=int(since) if since not in ("", "0") else None,
                timeout=float(request.query.get("timeoutSeconds") or 1800),
            )
        if verb == "list":
            return 200, self._list(request, rt, namespace)
        if verb == "deletecollection":
            return 200, self._delete_collection(request, rt, namespace)
        if rt.read_only and verb in ("create", "update", "patch"):
            raise KubeError(
                405,
                "MethodNotAllowed",
                f"{rt.plural} are managed by the sandbox's controllers; {verb} is not served",
            )
        if verb == "create":
            if name:
                raise KubeError(
                    405,
                    "MethodNotAllowed",
                    "the server does not allow this method on the requested resource",
                )
            self._require_namespace(rt, namespace)
            obj = request.json()
            if not isinstance(obj, dict):
                raise bad_request("the request body must be a JSON object")
            obj.setdefault("metadata", {})
            body_ns = obj["metadata"].get("namespace")
            if rt.namespaced:
                if body_ns and body_ns != namespace:
                    raise bad_request(
                        "the namespace of the provided object does not match the namespace "
                        "sent on the request"
                    )
                obj["metadata"]["namespace"] = namespace
            if obj.get("kind") not in (None, rt.kind) or obj.get("apiVersion") not in (
                None,
                rt.api_version,
            ):
                raise bad_request(
                    f"the API version in the data ({obj.get('apiVersion')}) does not match the "
                    f"expected API version ({rt.api_version})"
                )
            if dry_run:
                return 201, self._prepare_create(rt, obj)
            return 201, self._create(rt, obj)

        current = self.store.require(rt, namespace, name)
        if verb == "get":
            if sub == "scale":
                return 200, _scale_of(current)
            if sub == "log":  # what the pod's container printed (Job pods: jobs.py)
                tail = request.query.get("tailLines")
                return 200, self.jobs.log(namespace, name, int(tail) if tail and tail.lstrip("-").isdigit() else None)
            return 200, self._maybe_table(
                request, rt, [current], current["metadata"]
            ) if _wants_table(request) else current
        if verb == "delete":
            if dry_run:
                return 200, current
            return 200, self._delete(rt, current)
        if verb in ("update", "patch"):
            return 200, self._write(request, rt, current, sub, verb, dry_run)
        raise KubeError(
            405,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
        )

    def _list(self, request: _Request, rt: ResourceType, namespace: str) -> Obj:
        labels = parse_label_selector(request.query.get("labelSelector"))
        fields = parse_field_selector(request.query.get("fieldSelector"))
        items = [
            o
            for o in self.store.items(rt, namespace or None)
            if labels(o["metadata"].get("labels") or {}) and fields(o)
        ]
        meta: Obj = {"resourceVersion": str(self.store.revision)}
        offset = 0
        if request.query.get("continue"):
            try:
                offset = int(
                    json.loads(base64.urlsafe_b64decode(request.query["continue"]))["offset"]
                )
            except (ValueError, KeyError, TypeError):
                raise KubeError(
                    410, "Expired", "The provided continue parameter is too old"
                ) from None
        limit = int(request.query.get("limit") or 0)
        if offset:
            items = items[offset:]
        if limit and len(items) > limit:
            meta["continue"] = base64.urlsafe_b64encode(
                json.dumps({"offset": offset + limit}).encode()
            ).decode()
            meta["remainingItemCount"] = len(items) - limit
            items = items[:limit]
        if _wants_table(request):
            return self._maybe_table(request, rt, items, meta)
        if not rt.custom:
            # Built-in lists carry kind / apiVersion on the list only.
            for item in items:
                item.pop("kind", None)
                item.pop("apiVersion", None)
        return {
            "kind": f"{rt.kind}List",
            "apiVersion": rt.api_version,
            "metadata": meta,
            "items": items,
        }

    @staticmethod
    def _maybe_table(request: _Request, rt: ResourceType, items: list[Obj], meta: Obj) -> Obj:
        list_meta = {"resourceVersion": meta.get("resourceVersion", "")}
        if "continue" in meta:
            list_meta["continue"] = meta["continue"]
        return table(rt, items, list_meta, request.query.get("includeObject", "Metadata"))

    def _require_namespace(self, rt: ResourceType, namespace: str) -> None:
        if rt.namespaced and self.store.get(NAMESPACES, "", namespace) is None:
            raise not_found(NAMESPACES, namespace)

    # ------------------------------------------------------------------ create / write
    def _prepare_create(self, rt: ResourceType, obj: Obj) -> Obj:
        meta = obj.setdefault("metadata", {})
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + random_name_suffix()
        validate_name(rt, meta.get("name", ""))
        obj["kind"], obj["apiVersion"] = rt.kind, rt.api_version
        if rt is NAMESPACES:
            meta.setdefault("labels", {})["kubernetes.io/metadata.name"] = meta["name"]
            obj["spec"] = {"finalizers": ["kubernetes"]}
            obj["status"] = {"phase": "Active"}
        elif rt is DEPLOYMENTS:
            _default_deployment(obj)
            _validate_deployment(obj, None)
            obj["status"] = {}
        elif rt is JOBS:
            prepare_job(obj)
        elif rt.custom:
            # CRDs with a status subresource ignore status on create: only controllers set it.
            obj.pop("status", None)
        return obj

    def _create(self, rt: ResourceType, obj: Obj) -> Obj:
        self._require_namespace(rt, obj.get("metadata", {}).get("namespace", ""))
        return self.store.create(rt, self._prepare_create(rt, obj))

    def _write(
        self, request: _Request, rt: ResourceType, current: Obj, sub: str, verb: str, dry_run: bool
    ) -> Obj:
        name = current["metadata"]["name"]
        if sub == "scale":
            wanted = _requested(request, verb, DEPLOYMENTS, _scale_of(current), "a Scale object")
            _check_precondition(rt, current, wanted)
            replicas = (wanted.get("spec") or {}).get("replicas", 0)
            if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
                raise KubeError(
                    422,
                    "Invalid",
                    f'Scale.autoscaling "{name}" is invalid: spec.replicas: Invalid '
                    f"value: {json.dumps(replicas)}: must be greater than or equal to 0",
                )
            updated = copy.deepcopy(current)
            updated.setdefault("spec", {})["replicas"] = replicas
            return _scale_of(updated if dry_run else self.store.update(rt, updated))

        wanted = _requested(request, verb, rt, current, "a JSON object")
        _check_precondition(rt, current, wanted)
        wanted.setdefault("metadata", {})
        if wanted["metadata"].get("name", name) != name:
            raise bad_request(
                f"the name of the object ({wanted['metadata'].get('name')}) does not match the name on "
                f"the URL ({name})"
            )
        wanted["metadata"]["name"] = name
        if rt.namespaced:
            wanted["metadata"]["namespace"] = current["metadata"]["namespace"]
        if sub == "status":
            # The status subresource changes status only; everything else stays as stored.
            updated = copy.deepcopy(current)
            updated["status"] = wanted.get("status", {})
        else:
            updated = wanted
            if "status" in rt.subresources:
                # ...and the main resource never changes status.
                updated["status"] = copy.deepcopy(current.get("status", {}))
            if rt is DEPLOYMENTS:
                _default_deployment(updated)
                _validate_deployment(updated, current)
        return updated if dry_run else self.store.update(rt, updated)

    def _delete(self, rt: ResourceType, current: Obj) -> Obj:
        meta = current["metadata"]
        self.store.delete(rt, meta.get("namespace", ""), meta["name"])
        if rt is NAMESPACES:
            for other in RESOURCE_TYPES:
                if other.namespaced:
                    for obj in list(self.store.items(other, meta["name"])):
                        self.store.delete(other, meta["name"], obj["metadata"]["name"])
        if rt.custom:
            return current
        return {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Success",
            "details": {**rt.details(meta["name"]), "uid": meta.get("uid", "")},
        }

    def _delete_collection(self, request: _Request, rt: ResourceType, namespace: str) -> Obj:
        listing = self._list(
            _Request(
                "GET",
                request.path,
                {k: v for k, v in request.query.items() if k in ("labelSelector", "fieldSelector")},
                {},
                b"",
            ),
            rt,
            namespace,
        )
        for item in listing["items"]:
            self.store.delete(rt, item["metadata"].get("namespace", ""), item["metadata"]["name"])
        return {
            "kind": f"{rt.kind}List",
            "apiVersion": rt.api_version,
            "metadata": {"resourceVersion": str(self.store.revision)},
            "items": listing["items"],
        }


# ---------------------------------------------------------------------------------- helpers
def _wants_table(request: _Request) -> bool:
    return "as=table" in request.headers.get("accept", "").lower().replace(" ", "")


def _requested(request: _Request, verb: str, rt: ResourceType, current: Obj, kind: str) -> Obj:
    """The object an update sends, or `current` with a patch's changes applied."""
    if verb == "patch":
        wanted = apply_patch(rt, current, request.headers.get("content-type", ""), request.json())
    else:
        wanted = request.json()
    if not isinstance(wanted, dict):
        raise bad_request(f"the request body must be {kind}")
    return wanted


def _check_precondition(rt: ResourceType, current: Obj, wanted: Obj) -> None:
    """An update or patch carrying a resourceVersion applies only to that version (optimistic lock)."""
    sent = (wanted.get("metadata") or {}).get("resourceVersion")
    if sent and sent != current["metadata"]["resourceVersion"]:
        raise conflict(rt, current["metadata"]["name"])


def _scale_of(dep: Obj) -> Obj:
    meta = dep["metadata"]
    return {
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            k: meta[k]
            for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
            if k in meta
        },
        "spec": {"replicas": dep.get("spec", {}).get("replicas", 0)},
        "status": {
            "replicas": dep.get("status", {}).get("replicas", 0),
            "selector": selector_string(dep.get("spec", {}).get("selector")),
        },
    }


def _default_deployment(obj: Obj) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("replicas", 1)
    spec.setdefault(
        "strategy",
        {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}},
    )
    spec.setdefault("revisionHistoryLimit", 10)
    spec.setdefault("progressDeadlineSeconds", 600)
    pod = spec.setdefault("template", {}).setdefault("spec", {})
    pod.setdefault("restartPolicy", "Always")
    pod.setdefault("terminationGracePeriodSeconds", 30)
    pod.setdefault("dnsPolicy", "ClusterFirst")
    pod.setdefault("schedulerName", "default-scheduler")
    for container in pod.get("containers") or []:
        if isinstance(container, dict):
            image = str(container.get("image", ""))
            container.setdefault(
                "imagePullPolicy",
                "Always" if image.endswith(":latest") or ":" not in image else "IfNotPresent",
            )
            container.setdefault("terminationMessagePath", "/dev/termination-log")
            container.setdefault("terminationMessagePolicy", "File")


def _validate_deployment(obj: Obj, old: Obj | None) -> None:
    name = obj["metadata"].get("name", "")
    spec = obj.get("spec", {})
    causes: list[tuple[str, str]] = []
    replicas = spec.get("replicas")
    if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
        causes.append(
            (
                "spec.replicas",
                f"Invalid value: {json.dumps(replicas)}: must be greater than or equal to 0",
            )
        )
    selector = spec.get("selector") or {}
    if not selector.get("matchLabels") and not selector.get("matchExpressions"):
        causes.append(("spec.selector", "Required value"))
    else:
        labels = (spec.get("template", {}).get("metadata") or {}).get("labels") or {}
        if not parse_label_selector(selector_string(selector))(labels):
            causes.append(
                (
                    "spec.template.metadata.labels",
                    f"Invalid value: {json.dumps(labels)}: `selector` does not match template `labels`",
                )
            )
    if old is not None and old.get("spec", {}).get("selector") != selector:
        causes.append(
            ("spec.selector", f"Invalid value: {json.dumps(selector)}: field is immutable")
        )
    if not spec.get("template", {}).get("spec", {}).get("containers"):
        causes.append(("spec.template.spec.containers", "Required value"))
    if causes:
        raise invalid(DEPLOYMENTS, name, causes)


# ---------------------------------------------------------------------------------- seeding
def seed_kube_from_runbook(cluster: KubeCluster, runbook: Runbook, region: str) -> None:
    """Build what the runbook says a region's cluster holds, already running.

    Namespaces of its workloads (and Velero's), one Deployment per workload at the
    region's normal count (active when it serves, standby otherwise) with every pod ready,
    and the Velero Backup the runbook restores from, Completed and holding those Deployments.
    """
    serving = runbook.regions[region].role in (Role.primary, Role.active)
    workloads = runbook.workloads_in(region)
    velero = runbook.spec.backups.velero
    for ns in sorted({w.namespace for w in workloads} | ({velero.namespace} if velero else set())):
        cluster.ensure_namespace(ns)
    for w in workloads:
        if cluster.deployment(w.namespace, w.deployment) is not None:
            continue
        labels = {"app": w.deployment, "app.kubernetes.io/part-of": runbook.name}
        cluster.create(
            DEPLOYMENTS,
            {
                "metadata": {
                    "name": w.deployment,
                    "namespace": w.namespace,
                    "labels": dict(labels),
                },
                "spec": {
                    "replicas": w.replicas.active if serving else w.replicas.standby,
                    "selector": {"matchLabels": {"app": w.deployment}},
                    "template": {
                        "metadata": {"labels": dict(labels)},
                        "spec": {
                            "containers": [
                                {
                                    "name": w.deployment,
                                    "image": workload_image(region, runbook.name, w.deployment),
                                    "ports": [
                                        {"containerPort": 8000, "name": "http", "protocol": "TCP"}
                                    ],
                                    "resources": {
                                        "limits": {GPU: "1"},
                                        "requests": {GPU: "1", "cpu": "4", "memory": "16Gi"},
                                    },
                                    "readinessProbe": {
                                        "httpGet": {"path": "/v2/health/ready", "port": 8000}
                                    },
                                }
                            ]
                        },
                    },
                },
            },
        )
    _seed_scaled_workloads(cluster, runbook, serving)
    cluster.settle()
    if velero and cluster.store.get(BACKUPS, velero.namespace, velero.backup) is None:
        cluster.create(
            BACKUPS,
            {
                "metadata": {
                    "name": velero.backup,
                    "namespace": velero.namespace,
                    "labels": {"velero.io/storage-location": "default"},
                },
                "spec": {
                    "includedNamespaces": list(velero.namespaces),
                    "storageLocation": "default",
                    "ttl": "720h0m0s",
                },
            },
        )
        items = cluster.velero.capture(velero.namespace, velero.backup, list(velero.namespaces))
        with cluster.store.lock:
            backup = cluster.store.require(BACKUPS, velero.namespace, velero.backup)
            backup["status"] = {
                "phase": "Completed",
                "startTimestamp": timestamp(),
                "completionTimestamp": timestamp(),
                "expiration": timestamp(datetime.now(UTC) + timedelta(days=30)),
                "progress": {"totalItems": len(items), "itemsBackedUp": len(items)},
                "version": 1,
                "formatVersion": "1.1.0",
            }
            cluster.store.update(BACKUPS, backup)


def _seed_scaled_workloads(cluster: KubeCluster, runbook: Runbook, serving: bool) -> None:
    """The Deployments the runbook's scale blocks name (queue writers, consumers: not serving
    capacity), in every region: running (2 replicas, cpu only) where traffic is served."""
    for block in runbook.spec.blocks:
        for w in block.workloads or []:
            cluster.ensure_namespace(w.namespace)
            if cluster.deployment(w.namespace, w.deployment) is not None:
                continue
            labels = {"app": w.deployment, "app.kubernetes.io/part-of": runbook.name}
            container = {"name": w.deployment, "image": "public.ecr.aws/docker/library/busybox:1.36",
                         "resources": {"requests": {"cpu": "250m", "memory": "256Mi"}}}
            cluster.create(DEPLOYMENTS, {
                "metadata": {"name": w.deployment, "namespace": w.namespace, "labels": dict(labels)},
                "spec": {"replicas": 2 if serving else 0, "selector": {"matchLabels": {"app": w.deployment}},
                         "template": {"metadata": {"labels": dict(labels)}, "spec": {"containers": [container]}}},
            })


def seed_velero_schedule(
    cluster: KubeCluster,
    velero: Velero,
    schedule: str,
    backups: list[tuple[datetime, str]],
) -> list[str]:
    """A Velero Schedule and the Backups it made, as `velero schedule create` leaves them:
    each (completed at, phase) becomes Backup SCHEDULE-YYYYMMDDhhmmss labelled
    velero.io/schedule-name=SCHEDULE, holding the Deployments now in the cluster. Returns
    the Backups' names, in the order given."""
    cluster.create(
        SCHEDULES,
        {
            "metadata": {"name": schedule, "namespace": velero.namespace},
            "spec": {
                "schedule": "0 7 * * *",
                "template": {"includedNamespaces": list(velero.namespaces), "ttl": "720h0m0s"},
            },
            "status": {"phase": "Enabled"},
        },
    )
    names = []
    for completed, phase in backups:
        name = f"{schedule}-{completed.strftime('%Y%m%d%H%M%S')}"
        names.append(name)
        cluster.create(
            BACKUPS,
            {
                "metadata": {
                    "name": name,
                    "namespace": velero.namespace,
                    "labels": {"velero.io/storage-location": "default", SCHEDULE_LABEL: schedule},
                },
                "spec": {"includedNamespaces": list(velero.namespaces), "storageLocation": "default"},
            },
        )
        items = cluster.velero.capture(velero.namespace, name, list(velero.namespaces))
        with cluster.store.lock:
            backup = cluster.store.require(BACKUPS, velero.namespace, name)
            backup["status"] = {
                "phase": phase,
                "startTimestamp": timestamp(completed - timedelta(minutes=5)),
                "completionTimestamp": timestamp(completed),
                "progress": {"totalItems": len(items), "itemsBackedUp": len(items)},
            }
            cluster.store.update(BACKUPS, backup)
    if backups:
        with cluster.store.lock:
            stored = cluster.store.require(SCHEDULES, velero.namespace, schedule)
            stored["status"] = {"phase": "Enabled", "lastBackup": timestamp(max(c for c, _ in backups))}
            cluster.store.update(SCHEDULES, stored)
    return names


def start_kube_clusters(
    runbook: Runbook, board: FaultBoard, speed: float = 1.0, **options: Any
) -> dict[str, KubeCluster]:
    """One started, seeded cluster per runbook region (context names from the runbook)."""
    clusters: dict[str, KubeCluster] = {}
    try:
        for region, spec in runbook.regions.items():
            cluster = KubeCluster(region, board, speed, context=spec.kube.context, **options)
            clusters[region] = cluster
            cluster.start()
            seed_kube_from_runbook(cluster, runbook, region)
    except BaseException:
        for cluster in clusters.values():
            cluster.stop()
        raise
    return clusters


def write_kubeconfig(
    path: str | os.PathLike[str], clusters: Mapping[str, KubeCluster] | Iterable[KubeCluster]
) -> Path:
    """A kubeconfig with one cluster, user and context per region, named by its context.

    `clusters` is either context -> cluster or clusters that know their own context. The
    first is the current context, as the primary region's would be on an on-call laptop.
    """
    if isinstance(clusters, Mapping):
        pairs = list(clusters.items())
        if pairs and not isinstance(pairs[0][1], KubeCluster):
            raise TypeError("write_kubeconfig: expected a mapping of context -> KubeCluster")
        # A region -> cluster mapping (start_kube_clusters) still names contexts by the runbook.
        pairs = [(c.context if key == c.region else key, c) for key, c in pairs]
    else:
        pairs = [(c.context, c) for c in clusters]
    if not pairs:
        raise ValueError("write_kubeconfig: no clusters")
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "preferences": {},
        "clusters": [
            {
                "name": ctx,
                "cluster": {
                    "server": c.url,
                    "certificate-authority-data": base64.b64encode(c.tls.ca_pem).decode(),
                },
            }
            for ctx, c in pairs
        ],
        "users": [{"name": ctx, "user": {"token": c.token}} for ctx, c in pairs],
        "contexts": [
            {"name": ctx, "context": {"cluster": ctx, "user": ctx, "namespace": "default"}}
            for ctx, _ in pairs
        ],
        "current-context": pairs[0][0],
    }
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    # It holds bearer tokens: owner-only, like kubectl writes it.
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        yaml.safe_dump(config, fh, sort_keys=False)
    return target


__all__ = [
    "DEFAULT_POD_START_SECONDS",
    "DEFAULT_VELERO_RESTORE_SECONDS",
    "KubeCluster",
    "seed_kube_from_runbook",
    "start_kube_clusters",
    "write_kubeconfig",
]

"""The Kubernetes emulator's object model: resource types, the store, selectors, patches, tables.

Everything here follows the API server's observable behaviour (what the `kubernetes`
client and kubectl rely on), not its internals: one resourceVersion counter per cluster
that moves on every write and stands still on a no-op write, `generation` that moves only
when the spec moves, Status objects with the reason and message texts the real server
uses, the three patch types, label selectors and the Table form kubectl asks for.
"""

from __future__ import annotations

import copy
import re
import threading
import uuid
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

Obj = dict[str, Any]
EVENT_WINDOW = 5000  # writes a watch can resume across


# ------------------------------------------------------------------------------- errors
class KubeError(Exception):
    """An API error, answered as a `Status` object with the real server's reason and code."""

    def __init__(self, code: int, reason: str, message: str, details: Obj | None = None):
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details

    def status(self) -> Obj:
        body: Obj = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details is not None:
            body["details"] = self.details
        return body


def not_found(rt: ResourceType, name: str) -> KubeError:
    return KubeError(404, "NotFound", f'{rt.qualified} "{name}" not found', rt.details(name))


def already_exists(rt: ResourceType, name: str) -> KubeError:
    return KubeError(
        409, "AlreadyExists", f'{rt.qualified} "{name}" already exists', rt.details(name)
    )


def conflict(rt: ResourceType, name: str) -> KubeError:
    return KubeError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {rt.qualified} "{name}": the object has been '
        "modified; please apply your changes to the latest version and try again",
        rt.details(name),
    )


def invalid(rt: ResourceType, name: str, causes: list[tuple[str, str]]) -> KubeError:
    text = ", ".join(f"{f}: {m}" for f, m in causes)
    details = rt.details(name)
    details["causes"] = [
        {"reason": "FieldValueInvalid", "message": m, "field": f} for f, m in causes
    ]
    what = f"{rt.kind}.{rt.group}" if rt.group else rt.kind
    return KubeError(422, "Invalid", f'{what} "{name}" is invalid: {text}', details)


def bad_request(message: str) -> KubeError:
    return KubeError(400, "BadRequest", message)


# ------------------------------------------------------------------------ resource types
@dataclass(frozen=True)
class ResourceType:
    group: str  # "" for the core group
    version: str
    plural: str
    singular: str
    kind: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    subresources: tuple[str, ...] = ()
    # Custom resources (CRDs) differ from built-ins in small, visible ways: no strategic
    # merge patch, and list items carry kind / apiVersion.
    custom: bool = False
    read_only: bool = False  # objects only the emulator's controllers write (pods)

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def qualified(self) -> str:
        return f"{self.plural}.{self.group}" if self.group else self.plural

    def details(self, name: str) -> Obj:
        d: Obj = {"name": name, "kind": self.plural}
        if self.group:
            d["group"] = self.group
        return d

    def verbs(self) -> list[str]:
        if self.read_only:
            return ["delete", "get", "list"]
        return ["create", "delete", "deletecollection", "get", "list", "patch", "update"]


NAMESPACES = ResourceType(
    "", "v1", "namespaces", "namespace", "Namespace", False, ("ns",), subresources=("status",)
)
PODS = ResourceType(
    "", "v1", "pods", "pod", "Pod", True, ("po",), ("all",), ("status", "log"), read_only=True
)
DEPLOYMENTS = ResourceType(
    "apps",
    "v1",
    "deployments",
    "deployment",
    "Deployment",
    True,
    ("deploy",),
    ("all",),
    ("scale", "status"),
)
BACKUPS = ResourceType(
    "velero.io", "v1", "backups", "backup", "Backup", True, subresources=("status",), custom=True
)
RESTORES = ResourceType(
    "velero.io", "v1", "restores", "restore", "Restore", True, subresources=("status",), custom=True
)
# `velero schedule create` makes one; Velero's schedule controller creates a Backup from its
# template at each cron tick, named SCHEDULE-TIMESTAMP and labelled velero.io/schedule-name.
SCHEDULES = ResourceType(
    "velero.io", "v1", "schedules", "schedule", "Schedule", True, subresources=("status",), custom=True
)
# Nodes register themselves (the kubelet) or come from Karpenter; events are written by the
# scheduler, the kubelet and Karpenter: in the emulator, only its controllers write either.
NODES = ResourceType("", "v1", "nodes", "node", "Node", False, ("no",), subresources=("status",), read_only=True)
EVENTS = ResourceType("", "v1", "events", "event", "Event", True, ("ev",), read_only=True)
# Karpenter's NodePool (karpenter.sh/v1): cluster-scoped; `spec.limits` caps what it launches.
NODEPOOLS = ResourceType(
    "karpenter.sh", "v1", "nodepools", "nodepool", "NodePool", False, subresources=("status",), custom=True
)
# A Deployment's imagePullSecrets (kubernetes.io/dockerconfigjson) live here.
SECRETS = ResourceType("", "v1", "secrets", "secret", "Secret", True)
# batch/v1 Jobs: run a pod template to completion (twin/drpilot_twin/kube/jobs.py).
JOBS = ResourceType("batch", "v1", "jobs", "job", "Job", True, categories=("all",), subresources=("status",))
RESOURCE_TYPES = (NAMESPACES, PODS, DEPLOYMENTS, BACKUPS, RESTORES, SCHEDULES, NODES, EVENTS, NODEPOOLS, SECRETS, JOBS)


def resource_type(group: str, version: str, plural: str) -> ResourceType | None:
    for rt in RESOURCE_TYPES:
        if (rt.group, rt.version, rt.plural) == (group, version, plural):
            return rt
    return None


def group_versions() -> dict[str, list[ResourceType]]:
    out: dict[str, list[ResourceType]] = {}
    for rt in RESOURCE_TYPES:
        out.setdefault(rt.api_version, []).append(rt)
    return out


def resource_list(api_version: str) -> Obj:
    """The APIResourceList discovery document kubectl reads to map `deploy` to a URL."""
    resources: list[Obj] = []
    for rt in group_versions().get(api_version, []):
        resources.append(
            {
                "name": rt.plural,
                "singularName": rt.singular,
                "namespaced": rt.namespaced,
                "kind": rt.kind,
                "verbs": rt.verbs(),
                **({"shortNames": list(rt.short_names)} if rt.short_names else {}),
                **({"categories": list(rt.categories)} if rt.categories else {}),
            }
        )
        for sub in rt.subresources:
            entry: Obj = {
                "name": f"{rt.plural}/{sub}",
                "singularName": "",
                "namespaced": rt.namespaced,
                "kind": rt.kind,
                "verbs": ["get", "patch", "update"],
            }
            if sub == "scale":
                # The scale client finds the Scale kind's group-version here.
                entry.update(group="autoscaling", version="v1", kind="Scale")
            elif sub == "log":
                entry.update(verbs=["get"])
            resources.append(entry)
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": api_version,
        "resources": resources,
    }


def api_group_list() -> Obj:
    groups: dict[str, list[str]] = {}
    for rt in RESOURCE_TYPES:
        if rt.group and rt.version not in groups.setdefault(rt.group, []):
            groups[rt.group].append(rt.version)
    return {
        "kind": "APIGroupList",
        "apiVersion": "v1",
        "groups": [
            {
                "name": g,
                "versions": [{"groupVersion": f"{g}/{v}", "version": v} for v in versions],
                "preferredVersion": {"groupVersion": f"{g}/{versions[0]}", "version": versions[0]},
            }
            for g, versions in groups.items()
        ],
    }


# ----------------------------------------------------------------------------- the store
def timestamp(moment: datetime | None = None) -> str:
    return (moment or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_timestamp(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


def _body_of(obj: Obj) -> Obj:
    """What `generation` tracks: everything but metadata and status."""
    return {k: v for k, v in obj.items() if k not in ("metadata", "status", "kind", "apiVersion")}


@dataclass
class Store:
    """All objects of one cluster, behind one lock, with one resourceVersion counter.

    Callers hold `lock` across read-modify-write sequences (the HTTP handler for a patch,
    a controller for a status update), so a write never loses another's change.
    """

    lock: threading.RLock = field(default_factory=threading.RLock)
    objects: dict[tuple[str, str, str], Obj] = field(default_factory=dict)
    revision: int = 1
    # Set on every write so controllers wake at once instead of polling.
    changed: threading.Event = field(default_factory=threading.Event)
    # Recent writes for watches: (resourceVersion, event type, plural, namespace, object).
    # Like etcd's compaction window, a watch older than the oldest kept event gets 410 Gone.
    events: deque[tuple[int, str, str, str, Obj]] = field(
        default_factory=lambda: deque(maxlen=EVENT_WINDOW)
    )

    def get(self, rt: ResourceType, namespace: str, name: str) -> Obj | None:
        obj = self.objects.get((rt.plural, namespace if rt.namespaced else "", name))
        return copy.deepcopy(obj) if obj is not None else None

    def require(self, rt: ResourceType, namespace: str, name: str) -> Obj:
        obj = self.get(rt, namespace, name)
        if obj is None:
            raise not_found(rt, name)
        return obj

    def items(self, rt: ResourceType, namespace: str | None = None) -> Iterator[Obj]:
        """Objects of a type (in `namespace`, or everywhere when None), sorted like etcd keys."""
        keys = sorted(
            k
            for k in self.objects
            if k[0] == rt.plural and (namespace is None or k[1] == namespace)
        )
        for key in keys:
            yield copy.deepcopy(self.objects[key])

    def create(self, rt: ResourceType, obj: Obj) -> Obj:
        meta = obj.setdefault("metadata", {})
        name = meta.get("name", "")
        namespace = meta.get("namespace", "") if rt.namespaced else ""
        key = (rt.plural, namespace, name)
        if key in self.objects:
            raise already_exists(rt, name)
        meta.pop("resourceVersion", None)
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = timestamp()
        if rt in (DEPLOYMENTS, BACKUPS, RESTORES, SCHEDULES, NODEPOOLS, JOBS):
            meta["generation"] = 1
        obj["kind"], obj["apiVersion"] = rt.kind, rt.api_version
        self._write(key, obj)
        return copy.deepcopy(obj)

    def update(self, rt: ResourceType, new: Obj) -> Obj:
        """Write `new` over the stored object; a write that changes nothing is not a write."""
        meta = new["metadata"]
        key = (rt.plural, meta.get("namespace", "") if rt.namespaced else "", meta["name"])
        old = self.objects.get(key)
        if old is None:
            raise not_found(rt, meta["name"])
        # Fields the server owns.
        for owned in ("uid", "creationTimestamp", "generation", "resourceVersion"):
            if owned in old["metadata"]:
                meta[owned] = old["metadata"][owned]
            else:
                meta.pop(owned, None)
        new["kind"], new["apiVersion"] = rt.kind, rt.api_version
        if new == old:
            return copy.deepcopy(old)
        if "generation" in meta and _body_of(new) != _body_of(old):
            meta["generation"] = old["metadata"]["generation"] + 1
        self._write(key, new)
        return copy.deepcopy(new)

    def delete(self, rt: ResourceType, namespace: str, name: str) -> Obj:
        key = (rt.plural, namespace if rt.namespaced else "", name)
        obj = self.objects.pop(key, None)
        if obj is None:
            raise not_found(rt, name)
        self.revision += 1
        obj["metadata"]["resourceVersion"] = str(self.revision)
        self.events.append((self.revision, "DELETED", rt.plural, key[1], obj))
        self.changed.set()
        return copy.deepcopy(obj)

    def events_since(self, revision: int) -> list[tuple[int, str, str, str, Obj]] | None:
        """Writes after `revision`, oldest first; None when they are no longer all kept."""
        if self.events and revision < self.events[0][0] - 1:
            return None
        return [copy.deepcopy(e) for e in self.events if e[0] > revision]

    def _write(self, key: tuple[str, str, str], obj: Obj) -> None:
        self.revision += 1
        obj["metadata"]["resourceVersion"] = str(self.revision)
        kind = "MODIFIED" if key in self.objects else "ADDED"
        self.objects[key] = copy.deepcopy(obj)
        self.events.append((self.revision, kind, key[0], key[1], self.objects[key]))
        self.changed.set()


def validate_name(rt: ResourceType, name: str) -> None:
    if not name:
        raise invalid(
            rt, name, [("metadata.name", "Required value: name or generateName is required")]
        )
    pattern = _DNS_LABEL if rt is NAMESPACES else _DNS_SUBDOMAIN
    if len(name) > (63 if rt is NAMESPACES else 253) or not pattern.fullmatch(name):
        raise invalid(
            rt,
            name,
            [
                (
                    "metadata.name",
                    f'Invalid value: "{name}": a lowercase RFC 1123 '
                    + ("label" if rt is NAMESPACES else "subdomain")
                    + " must consist of lower case alphanumeric characters, '-' or '.', and must start"
                    " and end with an alphanumeric character",
                )
            ],
        )


# ------------------------------------------------------------------------ label selectors
_REQUIREMENT = re.compile(
    r"\s*(?P<neg>!)?\s*(?P<key>[A-Za-z0-9][-A-Za-z0-9_./]*)\s*"
    r"(?:(?P<op>==|=|!=)\s*(?P<value>[-A-Za-z0-9_.]*)"
    r"|\s(?P<setop>in|notin)\s*\((?P<values>[^)]*)\))?\s*$"
)


def _split_selector(text: str) -> list[str]:
    parts, depth, current = [], 0, ""
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    parts.append(current)
    return [p for p in parts if p.strip()]


def parse_label_selector(text: str | None):
    """A predicate over a labels dict, for the `labelSelector` query parameter."""
    if not text:
        return lambda labels: True
    checks = []
    for part in _split_selector(text):
        m = _REQUIREMENT.match(part)
        if not m or (m.group("neg") and (m.group("op") or m.group("setop"))):
            raise bad_request(
                f"unable to parse requirement: found '{part.strip()}', expected: identifier"
            )
        key, neg = m.group("key"), bool(m.group("neg"))
        op, value, setop = m.group("op"), m.group("value"), m.group("setop")
        if op in ("=", "=="):
            checks.append(lambda labels, k=key, v=value: labels.get(k) == v)
        elif op == "!=":
            checks.append(lambda labels, k=key, v=value: labels.get(k) != v)
        elif setop:
            values = {v.strip() for v in m.group("values").split(",") if v.strip()}
            if setop == "in":
                checks.append(lambda labels, k=key, vs=values: labels.get(k) in vs)
            else:
                checks.append(lambda labels, k=key, vs=values: labels.get(k) not in vs)
        elif neg:
            checks.append(lambda labels, k=key: k not in labels)
        else:
            checks.append(lambda labels, k=key: k in labels)
    return lambda labels: all(check(labels) for check in checks)


def parse_field_selector(text: str | None):
    """`metadata.name=` / `metadata.namespace=` (what kubectl and informers send)."""
    if not text:
        return lambda obj: True
    checks = []
    for part in text.split(","):
        m = re.fullmatch(r"\s*([A-Za-z.]+)\s*(==|=|!=)\s*([^,]*?)\s*", part)
        if not m or m.group(1) not in ("metadata.name", "metadata.namespace", "status.phase"):
            raise bad_request(
                f'"{part}" is not a known field selector: only "metadata.name", '
                '"metadata.namespace", "status.phase"'
            )
        path, op, value = m.groups()

        def read(obj: Obj, path: str = path) -> str:
            first, second = path.split(".")
            return str((obj.get(first) or {}).get(second, ""))

        if op == "!=":
            checks.append(lambda obj, r=read, v=value: r(obj) != v)
        else:
            checks.append(lambda obj, r=read, v=value: r(obj) == v)
    return lambda obj: all(check(obj) for check in checks)


def selector_string(selector: Obj | None) -> str:
    """A LabelSelector object as the string form (Scale.status.selector)."""
    if not selector:
        return ""
    parts = [f"{k}={v}" for k, v in sorted((selector.get("matchLabels") or {}).items())]
    for expr in selector.get("matchExpressions") or []:
        op, key, values = expr.get("operator"), expr.get("key"), expr.get("values") or []
        if op == "In":
            parts.append(f"{key} in ({','.join(sorted(values))})")
        elif op == "NotIn":
            parts.append(f"{key} notin ({','.join(sorted(values))})")
        elif op == "Exists":
            parts.append(key)
        elif op == "DoesNotExist":
            parts.append(f"!{key}")
    return ",".join(parts)


# -------------------------------------------------------------------------------- patches
def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch (application/merge-patch+json)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


# The patchMergeKey of the list fields a Deployment / Pod carries: lists of these are
# merged item by item, every other list is replaced (as the real schema says).
_MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "ports": "containerPort",
    "imagePullSecrets": "name",
    "conditions": "type",
    "hostAliases": "ip",
    "topologySpreadConstraints": "topologyKey",
}


def strategic_merge_patch(target: Any, patch: Any) -> Any:
    """Strategic merge patch for built-in types: merge patch, but keyed lists merge by key."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if patch.get("$patch") == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if key.startswith("$"):
            continue  # $retainKeys, $setElementOrder/..., $deleteFromPrimitiveList/...
        if value is None or (isinstance(value, dict) and value.get("$patch") == "delete"):
            result.pop(key, None)
        elif isinstance(value, list) and key in _MERGE_KEYS and isinstance(result.get(key), list):
            result[key] = _merge_list(result[key], value, _MERGE_KEYS[key])
        elif isinstance(value, dict):
            result[key] = strategic_merge_patch(result.get(key), value)
        else:
            result[key] = copy.deepcopy(value)
    return result


def _merge_list(current: list, patch: list, key: str) -> list:
    if any(isinstance(item, dict) and item.get("$patch") == "replace" for item in patch):
        return [copy.deepcopy(i) for i in patch if not (isinstance(i, dict) and "$patch" in i)]
    result = [copy.deepcopy(i) for i in current]
    for item in patch:
        if not isinstance(item, dict) or key not in item:
            result.append(copy.deepcopy(item))
            continue
        index = next(
            (
                n
                for n, old in enumerate(result)
                if isinstance(old, dict) and old.get(key) == item[key]
            ),
            None,
        )
        if item.get("$patch") == "delete":
            if index is not None:
                result.pop(index)
        elif index is None:
            result.append(strategic_merge_patch({}, item))
        else:
            result[index] = strategic_merge_patch(result[index], item)
    return result


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise ValueError(f"invalid JSON pointer {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _walk(doc: Any, parts: list[str]) -> Any:
    for part in parts:
        if isinstance(doc, list):
            doc = doc[int(part)]
        elif isinstance(doc, dict):
            doc = doc[part]
        else:
            raise KeyError(part)
    return doc


def _json_patch_op(doc: Any, op: Obj) -> Any:
    kind, parts = op.get("op"), _pointer(op.get("path", ""))
    if kind == "test":
        if _walk(doc, parts) != op.get("value"):
            raise ValueError(f"testing value {op.get('path')} failed")
        return doc
    if kind in ("move", "copy"):
        source = _pointer(op.get("from", ""))
        value = copy.deepcopy(_walk(doc, source))
        if kind == "move":
            doc = _json_patch_op(doc, {"op": "remove", "path": op["from"]})
        return _json_patch_op(doc, {"op": "add", "path": op["path"], "value": value})
    if not parts:
        if kind in ("add", "replace"):
            return copy.deepcopy(op.get("value"))
        raise ValueError("cannot remove the whole document")
    parent = _walk(doc, parts[:-1])
    last = parts[-1]
    if kind == "add":
        if isinstance(parent, list):
            index = len(parent) if last == "-" else int(last)
            if not 0 <= index <= len(parent):
                raise IndexError(last)
            parent.insert(index, copy.deepcopy(op["value"]))
        else:
            parent[last] = copy.deepcopy(op["value"])
    elif kind == "remove":
        if isinstance(parent, list):
            parent.pop(int(last))
        else:
            del parent[last]
    elif kind == "replace":
        if isinstance(parent, list):
            parent[int(last)] = copy.deepcopy(op["value"])
        else:
            if last not in parent:
                raise KeyError(last)
            parent[last] = copy.deepcopy(op["value"])
    else:
        raise ValueError(f"unknown JSON patch operation {kind!r}")
    return doc


def json_patch(target: Any, ops: Any) -> Any:
    """RFC 6902 JSON patch (application/json-patch+json)."""
    if not isinstance(ops, list):
        raise bad_request("json patch body must be a list of operations")
    doc = copy.deepcopy(target)
    for op in ops:
        try:
            doc = _json_patch_op(doc, op)
        except (KeyError, IndexError, ValueError, TypeError) as exc:
            raise KubeError(
                422,
                "Invalid",
                f"the server rejected our request due to an error in our "
                f"request: json patch {op.get('op')} operation does not apply: {exc}",
            ) from None
    return doc


PATCH_TYPES = {
    "application/json-patch+json": "json",
    "application/merge-patch+json": "merge",
    "application/strategic-merge-patch+json": "strategic",
}


def apply_patch(rt: ResourceType, target: Obj, content_type: str, patch: Any) -> Obj:
    kind = PATCH_TYPES.get(content_type.split(";")[0].strip().lower())
    if kind is None or (kind == "strategic" and rt.custom):
        raise KubeError(
            415,
            "UnsupportedMediaType",
            f"the body of the request was in an unknown format - accepted media types "
            f"include: {', '.join(t for t, k in PATCH_TYPES.items() if not (rt.custom and k == 'strategic'))}",
        )
    if kind == "json":
        return json_patch(target, patch)
    if not isinstance(patch, dict):
        raise bad_request("the patch body must be a JSON object")
    return merge_patch(target, patch) if kind == "merge" else strategic_merge_patch(target, patch)


# --------------------------------------------------------------------------------- tables
def age(created: str | None, now: datetime | None = None) -> str:
    """kubectl's human duration (k8s.io/apimachinery duration.HumanDuration)."""
    if not created:
        return "<unknown>"
    seconds = int(((now or datetime.now(UTC)) - parse_timestamp(created)).total_seconds())
    if seconds < 0:
        return "0s"
    minutes, hours = seconds // 60, seconds // 3600
    if seconds < 120:
        return f"{seconds}s"
    if minutes < 10:
        return f"{minutes}m{seconds % 60}s" if seconds % 60 else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        return f"{hours // 24}d{hours % 24}h" if hours % 24 else f"{hours // 24}d"
    return f"{hours // 24}d"


def _column(name: str, type_: str = "string", fmt: str = "", priority: int = 0) -> Obj:
    return {"name": name, "type": type_, "format": fmt, "description": name, "priority": priority}


def _deployment_row(obj: Obj) -> list[Any]:
    spec, status = obj.get("spec", {}), obj.get("status", {})
    containers = spec.get("template", {}).get("spec", {}).get("containers", [])
    return [
        obj["metadata"]["name"],
        f"{status.get('readyReplicas', 0)}/{spec.get('replicas', 0)}",
        status.get("updatedReplicas", 0),
        status.get("availableReplicas", 0),
        age(obj["metadata"].get("creationTimestamp")),
        ",".join(c.get("name", "") for c in containers),
        ",".join(c.get("image", "") for c in containers),
        selector_string(spec.get("selector")),
    ]


def _pod_row(obj: Obj) -> list[Any]:
    status = obj.get("status", {})
    statuses = status.get("containerStatuses") or []
    containers = obj.get("spec", {}).get("containers", [])
    reason = status.get("phase", "")
    for cs in statuses:
        waiting = (cs.get("state") or {}).get("waiting")
        if waiting and waiting.get("reason"):
            reason = waiting["reason"]
    return [
        obj["metadata"]["name"],
        f"{sum(1 for cs in statuses if cs.get('ready'))}/{len(containers)}",
        reason,
        str(sum(cs.get("restartCount", 0) for cs in statuses)),
        age(obj["metadata"].get("creationTimestamp")),
        status.get("podIP") or "<none>",
        obj.get("spec", {}).get("nodeName") or "<none>",
    ]


def _phase_row(obj: Obj) -> list[Any]:
    return [
        obj["metadata"]["name"],
        obj.get("status", {}).get("phase", ""),
        age(obj["metadata"].get("creationTimestamp")),
    ]


# Namespaces and Velero backups: kubectl shows the same three columns for both.
_PHASE_TABLE = ([_column("Name", fmt="name"), _column("Status"), _column("Age")], _phase_row)

_TABLES: dict[str, tuple[list[Obj], Any]] = {
    "deployments": (
        [
            _column("Name", fmt="name"),
            _column("Ready"),
            _column("Up-to-date", "integer"),
            _column("Available", "integer"),
            _column("Age"),
            _column("Containers", priority=1),
            _column("Images", priority=1),
            _column("Selector", priority=1),
        ],
        _deployment_row,
    ),
    "pods": (
        [
            _column("Name", fmt="name"),
            _column("Ready"),
            _column("Status"),
            _column("Restarts"),
            _column("Age"),
            _column("IP", priority=1),
            _column("Node", priority=1),
        ],
        _pod_row,
    ),
    "namespaces": _PHASE_TABLE,
    "restores": (
        [
            _column("Name", fmt="name"),
            _column("Backup"),
            _column("Status"),
            _column("Errors", "integer"),
            _column("Warnings", "integer"),
            _column("Age"),
        ],
        lambda o: [
            o["metadata"]["name"],
            o.get("spec", {}).get("backupName", ""),
            o.get("status", {}).get("phase", ""),
            o.get("status", {}).get("errors", 0),
            o.get("status", {}).get("warnings", 0),
            age(o["metadata"].get("creationTimestamp")),
        ],
    ),
    "backups": _PHASE_TABLE,
    "nodes": (
        [_column("Name", fmt="name"), _column("Status"), _column("Roles"), _column("Age"), _column("Version")],
        lambda o: [o["metadata"]["name"], "Ready", "<none>", age(o["metadata"].get("creationTimestamp")), "v1.32.0"],
    ),
    "events": (
        [_column("Last Seen"), _column("Type"), _column("Reason"), _column("Object"), _column("Message")],
        lambda o: [
            age(o.get("lastTimestamp")),
            o.get("type", ""),
            o.get("reason", ""),
            f"pod/{(o.get('involvedObject') or {}).get('name', '')}",
            o.get("message", ""),
        ],
    ),
    "nodepools": (
        [_column("Name", fmt="name"), _column("Nodes"), _column("Age")],
        lambda o: [
            o["metadata"]["name"],
            (o.get("status") or {}).get("resources", {}).get("nodes", "0"),
            age(o["metadata"].get("creationTimestamp")),
        ],
    ),
    "jobs": (
        [_column("Name", fmt="name"), _column("Status"), _column("Completions"), _column("Age")],
        lambda o: [
            o["metadata"]["name"],
            next((c["type"] for c in (o.get("status") or {}).get("conditions") or [] if c.get("status") == "True"), "Running"),
            f"{(o.get('status') or {}).get('succeeded', 0)}/{(o.get('spec') or {}).get('completions', 1)}",
            age(o["metadata"].get("creationTimestamp")),
        ],
    ),
    "schedules": (
        [_column("Name", fmt="name"), _column("Status"), _column("Schedule"), _column("Last Backup")],
        lambda o: [
            o["metadata"]["name"],
            o.get("status", {}).get("phase", ""),
            o.get("spec", {}).get("schedule", ""),
            o.get("status", {}).get("lastBackup", ""),
        ],
    ),
}


def table(
    rt: ResourceType, objects: list[Obj], list_meta: Obj, include_object: str = "Metadata"
) -> Obj:
    """The meta.k8s.io/v1 Table kubectl asks for (`Accept: application/json;as=Table;...`)."""
    columns, row_of = _TABLES[rt.plural]
    rows = []
    for obj in objects:
        row: Obj = {"cells": row_of(obj)}
        if include_object == "Object":
            row["object"] = obj
        elif include_object != "None":
            row["object"] = {
                "kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": obj["metadata"],
            }
        rows.append(row)
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_meta,
        "columnDefinitions": columns,
        "rows": rows,
    }

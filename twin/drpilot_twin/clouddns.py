"""A Google Cloud DNS v1 emulator on 127.0.0.1, for runbooks whose provider is clouddns.

No emulator exists on PyPI or Debian (docs/architecture.md, "The sandbox twin"), so this
one speaks the REST paths and JSON of https://cloud.google.com/dns/docs/reference/v1 that
drpilot and google-cloud-dns use:

  GET/POST /dns/v1/projects/{p}/managedZones            list (dnsName filter) / create
  GET/DELETE /dns/v1/projects/{p}/managedZones/{z}      z is the zone's name or numeric id
  GET  .../managedZones/{z}/rrsets[?name=&type=]        list
  GET  .../managedZones/{z}/rrsets/{name}/{type}        get
  POST .../managedZones/{z}/changes                     create {additions, deletions}
  GET  .../managedZones/{z}/changes[/{id}]              list (sortOrder) / get
  GET  /dns/v1/projects/{p}                             project quotas

Like the real API, a change is atomic and checked before anything is applied: a deletion
must name an existing record set (404 notFound) and equal it exactly (412 conditionNotMet);
an addition of a record set that exists and is not deleted in the same change is 409
alreadyExists. Record sets change at once; the change itself reads "pending" for
`clouddns_pending_seconds / speed` and then "done" (name servers updated). Weighted record
sets (`routingPolicy.wrr`) are stored and returned as sent, weights as numbers. DNS is
global: region-down faults do not touch it. Paging is not implemented (one page).

`seed_clouddns(url, runbook)` builds the runbook's managed zone and weighted records.
"""

from __future__ import annotations

import itertools
import random
import re
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from drpilot.domain.runbook import DnsRecord, Runbook
from drpilot_twin.faults import FaultBoard
from drpilot_twin.loopback import LoopbackServer

_ZONE_NAME = re.compile(r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?")
_TYPES = {"A", "AAAA", "CAA", "CNAME", "DNSKEY", "DS", "HTTPS", "MX", "NAPTR", "NS", "PTR",
          "SOA", "SPF", "SRV", "SSHFP", "SVCB", "TLSA", "TXT"}  # fmt: skip


class ApiError(Exception):
    """An error answered the way Google APIs do: {"error": {code, message, errors: [...]}}."""

    def __init__(self, code: int, reason: str, message: str):
        super().__init__(message)
        self.code, self.reason, self.message = code, reason, message

    def response(self) -> JSONResponse:
        error = {"domain": "global", "reason": self.reason, "message": self.message}
        return JSONResponse(
            {"error": {"code": self.code, "message": self.message, "errors": [error]}},
            status_code=self.code,
        )


def _stamp(at: float) -> str:
    return (
        datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%S.")
        + f"{int(at * 1000) % 1000:03d}Z"
    )


@dataclass
class Change:
    id: str
    started: float  # epoch
    done_at: float  # time.monotonic() from which it reads "done"
    additions: list[dict]
    deletions: list[dict]

    def resource(self) -> dict[str, Any]:
        status = "done" if time.monotonic() >= self.done_at else "pending"
        return {
            "kind": "dns#change",
            "id": self.id,
            "startTime": _stamp(self.started),
            "status": status,
            "isServing": True,
            "additions": self.additions,
            "deletions": self.deletions,
        }


@dataclass
class Zone:
    name: str
    dns_name: str
    description: str
    id: str
    created: float
    visibility: str = "public"
    rrsets: dict[tuple[str, str], dict] = field(default_factory=dict)
    changes: list[Change] = field(default_factory=list)

    def resource(self) -> dict[str, Any]:
        ns = self.rrsets.get((self.dns_name, "NS"), {}).get("rrdatas", [])
        return {
            "kind": "dns#managedZone",
            "name": self.name,
            "dnsName": self.dns_name,
            "description": self.description,
            "id": self.id,
            "nameServers": ns,
            "creationTime": _stamp(self.created),
            "visibility": self.visibility,
        }


def _label(rrset: dict) -> str:
    return f"{rrset.get('name')} ({rrset.get('type')})"


def _normal_rrset(raw: Any, where: str, zone: Zone) -> dict:
    """Validate an rrset from a request and return it in the API's stored form."""
    if not isinstance(raw, dict):
        raise ApiError(400, "invalid", f"Invalid value for '{where}': expected an object")
    name, rtype = raw.get("name"), raw.get("type")
    if not isinstance(name, str) or not name.endswith("."):
        raise ApiError(400, "invalid", f"Invalid value for '{where}.name': '{name}'")
    if not (name == zone.dns_name or name.endswith("." + zone.dns_name)):
        raise ApiError(
            400,
            "invalid",
            f"The resource record set '{where}' is invalid because the DNS name '{name}' "
            f"is not a subdomain of the zone's DNS name '{zone.dns_name}'.",
        )
    if rtype not in _TYPES:
        raise ApiError(400, "invalid", f"Invalid value for '{where}.type': '{rtype}'")
    try:
        ttl = int(raw.get("ttl", 300))
    except (TypeError, ValueError):
        raise ApiError(
            400, "invalid", f"Invalid value for '{where}.ttl': '{raw.get('ttl')}'"
        ) from None
    if ttl < 0:
        raise ApiError(400, "invalid", f"Invalid value for '{where}.ttl': '{ttl}'")
    stored: dict[str, Any] = {
        "kind": "dns#resourceRecordSet",
        "name": name,
        "type": rtype,
        "ttl": ttl,
    }
    rrdatas, policy = raw.get("rrdatas"), raw.get("routingPolicy")
    if bool(rrdatas) == bool(policy):
        raise ApiError(
            400,
            "invalid",
            f"The resource record set '{where}' must have exactly one of rrdatas or routingPolicy.",
        )
    if rrdatas:
        if not isinstance(rrdatas, list) or not all(isinstance(d, str) and d for d in rrdatas):
            raise ApiError(400, "invalid", f"Invalid value for '{where}.rrdatas'")
        stored["rrdatas"] = list(rrdatas)
        return stored
    items = policy.get("wrr", {}).get("items") if isinstance(policy, dict) else None
    if not isinstance(items, list) or not items:
        raise ApiError(
            400, "invalid", f"Invalid value for '{where}.routingPolicy': only wrr is emulated"
        )
    stored_items = []
    for i, item in enumerate(items):
        path = f"{where}.routingPolicy.wrr.items[{i}]"
        weight = item.get("weight") if isinstance(item, dict) else None
        datas = item.get("rrdatas") if isinstance(item, dict) else None
        if (
            isinstance(weight, bool)
            or not isinstance(weight, int | float)
            or not 0 <= weight <= 1000
        ):
            raise ApiError(400, "invalid", f"Invalid value for '{path}.weight': '{weight}'")
        if not isinstance(datas, list) or not datas or not all(isinstance(d, str) for d in datas):
            raise ApiError(400, "invalid", f"Invalid value for '{path}.rrdatas'")
        stored_items.append(
            {
                "kind": "dns#rRSetRoutingPolicyWrrPolicyWrrPolicyItem",
                "weight": float(weight),
                "rrdatas": list(datas),
            }
        )
    stored["routingPolicy"] = {
        "kind": "dns#rRSetRoutingPolicy",
        "wrr": {"kind": "dns#rRSetRoutingPolicyWrrPolicy", "items": stored_items},
    }
    return stored


def _same(a: dict, b: dict) -> bool:
    """Deletion matching: ttl, rrdatas and routing policy equal (kinds ignored)."""

    def key(r: dict):
        policy = r.get("routingPolicy")
        items = (
            tuple((float(i["weight"]), tuple(i["rrdatas"])) for i in policy["wrr"]["items"])
            if policy
            else None
        )
        return r["ttl"], tuple(r.get("rrdatas") or ()), items

    return key(a) == key(b)


class CloudDnsEmulator:
    """Cloud DNS v1 over HTTP on 127.0.0.1: state in memory, faults from the board."""

    def __init__(self, board: FaultBoard, speed: float = 1.0, port: int = 0):
        self.board = board
        self.speed = speed
        self._lock = threading.RLock()
        self._zones: dict[tuple[str, str], Zone] = {}  # (project, zone name) -> zone
        self._ids = itertools.count(random.randrange(10**15, 10**16))
        self.changes_created = 0  # change sets accepted through the API since reset
        app = Starlette(routes=self._routes())
        self._server = LoopbackServer(app, port=port, name="clouddns", lifespan="off")

    # ------------------------------------------------------------------ lifecycle
    @property
    def url(self) -> str:
        return self._server.url

    def start(self) -> None:
        self._server.start()

    def stop(self) -> None:
        self._server.stop()

    def reset(self) -> None:
        with self._lock:
            self._zones.clear()
            self.changes_created = 0

    @property
    def change_count(self) -> int:
        with self._lock:
            return self.changes_created

    # ------------------------------------------------------------------ routes
    def _routes(self) -> list[Route]:
        base = "/dns/v1/projects/{project}"
        zone = base + "/managedZones/{zone}"
        return [
            Route(base, self._project, methods=["GET"]),
            Route(base + "/managedZones", self._zones_list, methods=["GET"]),
            Route(base + "/managedZones", self._zone_create, methods=["POST"]),
            Route(zone, self._zone_get, methods=["GET"]),
            Route(zone, self._zone_delete, methods=["DELETE"]),
            Route(zone + "/rrsets", self._rrsets_list, methods=["GET"]),
            Route(zone + "/rrsets/{name}/{type}", self._rrset_get, methods=["GET"]),
            Route(zone + "/changes", self._changes_list, methods=["GET"]),
            Route(zone + "/changes", self._change_create, methods=["POST"]),
            Route(zone + "/changes/{change}", self._change_get, methods=["GET"]),
        ]

    @staticmethod
    def _answer(handler):
        async def wrapped(self, request: Request) -> Response:
            try:
                return await handler(self, request)
            except ApiError as error:
                return error.response()

        return wrapped

    def _zone(self, request: Request) -> Zone:
        project = request.path_params["project"]
        wanted = request.path_params["zone"]
        with self._lock:
            found = self._zones.get((project, wanted)) or next(
                (z for (p, _), z in self._zones.items() if p == project and z.id == wanted), None
            )
        if found is None:
            raise ApiError(
                404,
                "notFound",
                f"The 'parameters.managedZone' resource named '{wanted}' does not exist.",
            )
        return found

    @staticmethod
    async def _json(request: Request) -> dict:
        try:
            body = await request.json()
        except ValueError:
            raise ApiError(400, "parseError", "Parse Error") from None
        if not isinstance(body, dict):
            raise ApiError(400, "parseError", "Parse Error")
        return body

    @_answer
    async def _project(self, request: Request) -> Response:
        project = request.path_params["project"]
        quota = {
            "kind": "dns#quota",
            "managedZones": 10000,
            "rrsetsPerManagedZone": 10000,
            "rrsetAdditionsPerChange": 1000,
            "rrsetDeletionsPerChange": 1000,
            "totalRrdataSizePerChange": 100000,
            "resourceRecordsPerRrset": 100,
            "whitelistedKeySpecs": [],
        }
        return JSONResponse({"kind": "dns#project", "id": project, "quota": quota})

    @_answer
    async def _zones_list(self, request: Request) -> Response:
        project = request.path_params["project"]
        dns_name = request.query_params.get("dnsName")
        with self._lock:
            zones = [
                z.resource()
                for (p, _), z in sorted(self._zones.items())
                if p == project and (dns_name is None or z.dns_name == dns_name)
            ]
        return JSONResponse({"kind": "dns#managedZonesListResponse", "managedZones": zones})

    @_answer
    async def _zone_create(self, request: Request) -> Response:
        project = request.path_params["project"]
        body = await self._json(request)
        name, dns_name = body.get("name"), body.get("dnsName")
        if not isinstance(name, str) or not _ZONE_NAME.fullmatch(name):
            raise ApiError(400, "invalid", f"Invalid value for 'entity.managedZone.name': '{name}'")
        if not isinstance(dns_name, str) or not dns_name.endswith("."):
            raise ApiError(
                400, "invalid", f"Invalid value for 'entity.managedZone.dnsName': '{dns_name}'"
            )
        with self._lock:
            if (project, name) in self._zones:
                raise ApiError(
                    409,
                    "alreadyExists",
                    f"The resource 'entity.managedZone' named '{name}' already exists",
                )
            zone = Zone(
                name=name,
                dns_name=dns_name,
                description=str(body.get("description", "")),
                id=str(next(self._ids)),
                created=time.time(),
                visibility=str(body.get("visibility", "public")),
            )
            servers = [f"ns-cloud-a{i}.googledomains.com." for i in range(1, 5)]
            soa = f"{servers[0]} cloud-dns-hostmaster.google.com. 1 21600 3600 259200 300"
            initial = [
                {
                    "kind": "dns#resourceRecordSet",
                    "name": dns_name,
                    "type": "NS",
                    "ttl": 21600,
                    "rrdatas": servers,
                },
                {
                    "kind": "dns#resourceRecordSet",
                    "name": dns_name,
                    "type": "SOA",
                    "ttl": 21600,
                    "rrdatas": [soa],
                },
            ]
            for rrset in initial:
                zone.rrsets[(dns_name, rrset["type"])] = rrset
            # Change "0" is the zone's creation, as in the real API.
            zone.changes.append(Change("0", zone.created, 0.0, initial, []))
            self._zones[(project, name)] = zone
        return JSONResponse(zone.resource())

    @_answer
    async def _zone_get(self, request: Request) -> Response:
        return JSONResponse(self._zone(request).resource())

    @_answer
    async def _zone_delete(self, request: Request) -> Response:
        zone = self._zone(request)
        with self._lock:
            if any(t not in ("NS", "SOA") or n != zone.dns_name for n, t in zone.rrsets):
                raise ApiError(
                    400,
                    "containerNotEmpty",
                    f"The resource named '{zone.name}' cannot be deleted because it is not empty",
                )
            self._zones.pop((request.path_params["project"], zone.name), None)
        return Response(status_code=204)

    @_answer
    async def _rrsets_list(self, request: Request) -> Response:
        zone = self._zone(request)
        name = request.query_params.get("name")
        rtype = request.query_params.get("type")
        if rtype and not name:
            raise ApiError(
                400, "invalid", "Invalid value for 'parameters.type': type requires name"
            )
        with self._lock:
            rrsets = [
                r
                for (n, t), r in sorted(zone.rrsets.items())
                if (name is None or n == name) and (rtype is None or t == rtype)
            ]
        return JSONResponse({"kind": "dns#resourceRecordSetsListResponse", "rrsets": rrsets})

    @_answer
    async def _rrset_get(self, request: Request) -> Response:
        zone = self._zone(request)
        key = (request.path_params["name"], request.path_params["type"])
        with self._lock:
            rrset = zone.rrsets.get(key)
        if rrset is None:
            raise ApiError(
                404, "notFound", f"The 'parameters.name' resource named '{key[0]}' does not exist."
            )
        return JSONResponse(rrset)

    @_answer
    async def _changes_list(self, request: Request) -> Response:
        zone = self._zone(request)
        descending = request.query_params.get("sortOrder") == "descending"
        with self._lock:
            changes = [c.resource() for c in zone.changes]
        changes.sort(key=lambda c: int(c["id"]), reverse=descending)
        limit = request.query_params.get("maxResults")
        if limit and limit.isdigit():
            changes = changes[: int(limit)]
        return JSONResponse({"kind": "dns#changesListResponse", "changes": changes})

    @_answer
    async def _change_get(self, request: Request) -> Response:
        zone = self._zone(request)
        wanted = request.path_params["change"]
        with self._lock:
            change = next((c for c in zone.changes if c.id == wanted), None)
        if change is None:
            raise ApiError(
                404,
                "notFound",
                f"The 'parameters.changeId' resource named '{wanted}' does not exist.",
            )
        return JSONResponse(change.resource())

    @_answer
    async def _change_create(self, request: Request) -> Response:
        zone = self._zone(request)
        body = await self._json(request)
        additions_raw = body.get("additions") or []
        deletions_raw = body.get("deletions") or []
        if not isinstance(additions_raw, list) or not isinstance(deletions_raw, list):
            raise ApiError(400, "invalid", "Invalid value for 'entity.change'")
        if not additions_raw and not deletions_raw:
            raise ApiError(
                400, "required", "The 'entity.change' parameter is required but was missing."
            )
        additions = [
            _normal_rrset(r, f"entity.change.additions[{i}]", zone)
            for i, r in enumerate(additions_raw)
        ]
        deletions = [
            _normal_rrset(r, f"entity.change.deletions[{i}]", zone)
            for i, r in enumerate(deletions_raw)
        ]
        with self._lock:
            # Check everything first: a change applies entirely or not at all.
            deleted: set[tuple[str, str]] = set()
            for i, rrset in enumerate(deletions):
                key = (rrset["name"], rrset["type"])
                held = zone.rrsets.get(key)
                if held is None or key in deleted:
                    raise ApiError(
                        404,
                        "notFound",
                        f"The 'entity.change.deletions[{i}]' resource named '{_label(rrset)}' does not exist.",
                    )
                if not _same(held, rrset):
                    raise ApiError(
                        412,
                        "conditionNotMet",
                        f"Precondition not met for 'entity.change.deletions[{i}]'",
                    )
                deleted.add(key)
            added: set[tuple[str, str]] = set()
            for i, rrset in enumerate(additions):
                key = (rrset["name"], rrset["type"])
                if (key in zone.rrsets and key not in deleted) or key in added:
                    raise ApiError(
                        409,
                        "alreadyExists",
                        f"The resource 'entity.change.additions[{i}]' named '{_label(rrset)}' already exists",
                    )
                added.add(key)
            for key in deleted:
                zone.rrsets.pop(key)
            for rrset in additions:
                zone.rrsets[(rrset["name"], rrset["type"])] = rrset
            pending = self.board.now.clouddns_pending_seconds / self.speed
            change = Change(
                id=str(len(zone.changes)),
                started=time.time(),
                done_at=time.monotonic() + pending,
                additions=additions,
                deletions=deletions,
            )
            zone.changes.append(change)
            self.changes_created += 1
        return JSONResponse(change.resource())


def seed_clouddns(url: str, runbook: Runbook) -> str:
    """Create the runbook's managed zone (in spec.dns.project) and its weighted records
    with the normal weights; returns the managed zone's name. Idempotent: an existing zone
    is reused, records are set only when they differ.

    Each record becomes one `routingPolicy.wrr` record set whose items follow the runbook's
    region order, item i's rrdatas being region i's target (wrr items carry no identifier)."""
    name = managed_zone_name(runbook)
    with httpx.Client(timeout=10) as client:
        created = client.post(
            f"{url}/dns/v1/projects/{runbook.spec.dns.project}/managedZones",
            json={"name": name, "dnsName": runbook.spec.dns.zone, "description": f"drpilot sandbox: {runbook.name}"},
        )
        if created.status_code != 409:  # already there: reuse it
            created.raise_for_status()
    CloudDnsRecords(url, runbook).put(runbook.normal_weights())
    return name


def managed_zone_name(runbook: Runbook) -> str:
    """spec.dns.managed_zone, or the runbook's documented default: the zone's DNS name made
    a valid zone name (example.dev. -> example-dev)."""
    return runbook.spec.dns.managed_zone or runbook.spec.dns.zone.rstrip(".").replace(".", "-")


class CloudDnsRecords:
    """The runbook's weighted records in a Cloud DNS (emulator) zone, through its v1 REST
    API: plain HTTP, not drpilot's Cloud DNS provider, which the twin stands in for."""

    def __init__(self, url: str, runbook: Runbook):
        self.runbook = runbook
        self.zone = f"{url}/dns/v1/projects/{runbook.spec.dns.project}/managedZones/{managed_zone_name(runbook)}"

    def weights(self) -> dict[str, int]:
        """The weight each region gets (the first record's: all records move together)."""
        with httpx.Client(timeout=10) as client:
            held = self._held(client, self.runbook.spec.dns.records[0])[1]
        return {region: held[region][1] if region in held else 0 for region in self.runbook.regions}

    def put(self, weights: Mapping[str, int]) -> None:
        """Every record at `weights`, the runbook's targets and TTL, in one change (deleting
        what is held, adding the wanted wrr sets); no change when they are already."""
        deletions, additions, same = [], [], True
        with httpx.Client(timeout=10) as client:
            for record in self.runbook.spec.dns.records:
                rrsets, held = self._held(client, record)
                wanted = {
                    region: (_normal(record.targets[region]), weights.get(region, 0), record.ttl)
                    for region in self.runbook.regions
                }
                same = same and held == wanted
                deletions += rrsets
                additions.append(
                    {
                        "name": record.name,
                        "type": record.type.value,
                        "ttl": record.ttl,
                        "routingPolicy": {
                            "wrr": {
                                "items": [
                                    {"weight": weights.get(region, 0), "rrdatas": [record.targets[region]]}
                                    for region in self.runbook.regions
                                ]
                            }
                        },
                    }
                )
            if not same:
                client.post(
                    f"{self.zone}/changes", json={"additions": additions, "deletions": deletions}
                ).raise_for_status()

    def _held(self, client: httpx.Client, record: DnsRecord) -> tuple[list[dict], dict[str, tuple[str, int, int]]]:
        """The record's record sets as held, and region -> (target, weight, TTL) from them."""
        reply = client.get(f"{self.zone}/rrsets", params={"name": record.name, "type": record.type.value})
        reply.raise_for_status()
        rrsets = reply.json().get("rrsets", [])
        regions = list(self.runbook.regions)
        held = {}
        for rrset in rrsets:
            # A plain record sends everything to its one target.
            items = rrset.get("routingPolicy", {}).get("wrr", {}).get("items") or [
                {"weight": 100, "rrdatas": rrset.get("rrdatas") or []}
            ]
            for index, item in enumerate(items):
                target = _normal((item.get("rrdatas") or [""])[0])
                owners = [r for r in regions if _normal(record.targets[r]) == target]
                # wrr items carry no identifier: an item is the region whose target it
                # holds; a target regions share is told apart by its place (region order).
                if len(owners) > 1:
                    owners = [r for r in owners if index < len(regions) and regions[index] == r]
                if len(owners) == 1:
                    held[owners[0]] = (target, round(float(item.get("weight", 0))), int(rrset.get("ttl", 0)))
        return rrsets, held


def _normal(name: str) -> str:
    """DNS names compare case-insensitively and with or without the root dot."""
    return name.strip().lower().rstrip(".")

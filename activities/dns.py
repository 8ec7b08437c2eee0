"""DNS: read and set the weights of a runbook's weighted records (Route53 or Cloud DNS).

The runbook names the records and, per region, the value each record points to there.
Every record is a set of weighted targets, one per region; all records move together, so
one desired state is one weight per region. A change is made as ONE provider change
(Route53 change batch of UPSERTs; Cloud DNS change with deletions + additions, which the
API applies atomically), so resolvers never see a gap, and then waited for until the
provider reports it applied (Route53 INSYNC, Cloud DNS done).

Idempotent and resumable: the activity reads first and makes no change when the records
already hold the desired state; after a change it heartbeats the change id, so a retry
after a crash waits on that change instead of making another. A retry that finds the
records in place without a change id (the crash came between submit and heartbeat) still
waits until they are applied: Cloud DNS lists the zone's pending changes; Route53 cannot,
so it re-submits the same UPSERTs and waits for that change.

Region -> weighted target:
* Route53: one record set per region, SetIdentifier = `record.set_identifier(region)`
  (the region name unless the runbook says otherwise).
* Cloud DNS: one record set per record with `routingPolicy.wrr`; its items carry no
  identifier, so drpilot writes one item per region in the runbook's region order, each
  item's rrdatas being that region's target. Reading maps an item to the region whose
  target equals the item's rrdatas; items whose target is ambiguous or unknown fall back
  to their position in the runbook's region order (when the counts agree).
"""

from __future__ import annotations

import contextlib
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Self
from urllib.parse import urlparse

import boto3
import botocore.exceptions
from botocore.config import Config
from google.api_core import exceptions as google_errors
from google.api_core.client_options import ClientOptions
from google.auth import exceptions as google_auth_errors
from google.auth.credentials import AnonymousCredentials
from google.cloud import dns
from requests import exceptions as requests_errors
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.contracts import (
    DNS_APPLY,
    DNS_READ,
    DnsApplyInput,
    DnsApplyResult,
    DnsReadInput,
    DnsState,
    ErrorType,
    RecordWeights,
    ScaledWait,
)
from activities.waits import PolledWait
from drpilot.domain.runbook import DnsRecord, Runbook
from drpilot.domain.settings import Settings

# Route53 accepts at most 1,000 records per ChangeResourceRecordSets; drpilot keeps its
# batches at 100 changes so a batch stays well inside the 32,000-character limit too.
ROUTE53_MAX_CHANGES = 100
# Route53 allows 5 API requests per second per account: one poller at most 4.
# Up to this many records are read one listing each; more, by listing the zone once.
ROUTE53_PER_RECORD_READS = 10
ROUTE53_MIN_POLL_SECONDS = 0.25
# Provider changes normally apply within a minute; polling every 2 s (less when
# rehearsing at speed) sees it promptly at 0.5 requests/s.
POLL_SECONDS = 2.0
# After this long still pending, the attempt fails (retryable) and the retry resumes
# waiting on the same change from the heartbeat details.
WAIT_TIMEOUT_SECONDS = 600.0


@dataclass(frozen=True)
class WeightedTarget:
    """One region's part of a weighted record as the provider holds it."""

    value: str
    weight: int
    ttl: int


# record name -> region -> its weighted target (regions without one are absent)
Current = dict[str, dict[str, WeightedTarget]]


@dataclass(frozen=True)
class ChangeHandle:
    """A change a provider accepted: enough to wait on it, also from another attempt."""

    provider: str  # "route53" | "clouddns"
    zone: str  # Route53 hosted zone id | "project/managed-zone"
    change_ids: tuple[str, ...]  # more than one only when a batch had to be split
    status: str  # provider's words: PENDING / INSYNC, pending / done
    submitted: float = field(default_factory=time.time)  # epoch seconds

    def details(self, weights: Mapping[str, int]) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "zone": self.zone,
            "change_ids": list(self.change_ids),
            "status": self.status,
            "submitted": self.submitted,
            "weights": dict(weights),
        }

    @classmethod
    def from_details(cls, details: Any) -> ChangeHandle | None:
        try:
            return cls(
                provider=str(details["provider"]),
                zone=str(details["zone"]),
                change_ids=tuple(str(i) for i in details["change_ids"]),
                status=str(details["status"]),
                submitted=float(details["submitted"]),
            )
        except (KeyError, TypeError, ValueError):
            return None


Heartbeat = Callable[[ChangeHandle], None]


class DnsProvider(ABC):
    """One DNS provider's view of a runbook's weighted records."""

    name: str
    applied_status: str  # the status that means the change is served everywhere
    min_poll_seconds: float = 0.2
    lists_pending: bool = False  # whether `pending` can see a zone's unapplied changes

    @abstractmethod
    def current(self, runbook: Runbook) -> Current:
        """Every runbook record's weighted targets as the provider holds them now."""

    @abstractmethod
    def apply(
        self, runbook: Runbook, weights: Mapping[str, int], current: Current | None = None
    ) -> ChangeHandle:
        """Set every record to `weights` (and the runbook's targets and TTL) in one change."""

    @abstractmethod
    def refresh(self, handle: ChangeHandle) -> ChangeHandle:
        """The handle with the provider's current status of its change(s)."""

    def pending(self, runbook: Runbook) -> list[ChangeHandle]:
        """Changes to the runbook's zone that are not applied yet (when the API can tell)."""
        return []

    def read(self, runbook: Runbook) -> DnsState:
        current = self.current(runbook)
        return DnsState(
            records=[
                RecordWeights(
                    name=record.name,
                    weights={
                        region: current.get(record.name, {}).get(region, _ABSENT).weight
                        for region in runbook.regions
                    },
                )
                for record in runbook.spec.dns.records
            ]
        )

    def matches(self, runbook: Runbook, weights: Mapping[str, int], current: Current) -> bool:
        """True when every record already points every region at its target with `weights`."""
        for record in runbook.spec.dns.records:
            held = current.get(record.name, {})
            for region in runbook.regions:
                want = WeightedTarget(record.targets[region], weights.get(region, 0), record.ttl)
                have = held.get(region)
                if have is None or _normal(have.value) != _normal(want.value):
                    return False
                if (have.weight, have.ttl) != (want.weight, want.ttl):
                    return False
        return True

    def wait_applied(
        self,
        handle: ChangeHandle,
        heartbeat: Heartbeat,
        speed: float = 1.0,
        timeout: float = WAIT_TIMEOUT_SECONDS,
    ) -> tuple[ChangeHandle, list[ScaledWait]]:
        """Poll until the change is applied, heartbeating each status; retryable on timeout.
        Also how long it was pending, for a rehearsal's RTO projection."""
        interval = max(self.min_poll_seconds, POLL_SECONDS / speed)
        deadline = time.monotonic() + timeout / speed
        wait = PolledWait("dns-pending", speed, POLL_SECONDS, time.monotonic() - (time.time() - handle.submitted))
        while True:
            handle = self.refresh(handle)
            heartbeat(handle)
            if handle.status == self.applied_status:
                return handle, wait.done()
            wait.pending()
            if time.monotonic() >= deadline:
                raise ApplicationError(
                    f"{self.name} change {', '.join(handle.change_ids)} in zone {handle.zone} "
                    f"is still {handle.status} after {timeout / speed:.0f}s; the retry keeps "
                    "waiting on the same change",
                    type=ErrorType.DNS_CHANGE_PENDING,
                )
            time.sleep(interval)


_ABSENT = WeightedTarget(value="", weight=0, ttl=0)


def _normal(value: str) -> str:
    """DNS names compare case-insensitively and with or without the root dot."""
    return value.strip().lower().rstrip(".")


def _is(rrset: dict, record: DnsRecord) -> bool:
    """A Route53 record set belongs to the runbook record (same name and type)."""
    return _normal(rrset["Name"]) == _normal(record.name) and rrset["Type"] == record.type


def _records_text(runbook: Runbook) -> str:
    return ", ".join(f"{r.name} ({r.type})" for r in runbook.spec.dns.records)


# ====================================================================================
# Route53


def route53_client(settings: Settings | None = None):
    """A Route53 client from the environment (AWS_ENDPOINT_URL points it at the twin)."""
    # Standard retries back off with jitter on Throttling / PriorRequestNotComplete / 5xx
    # inside one attempt; what still fails is left to the activity's retry policy.
    config = Config(
        retries={"mode": "standard", "max_attempts": 4},
        connect_timeout=5,
        read_timeout=30,
    )
    session = boto3.session.Session()
    return session.client("route53", region_name=session.region_name or "us-east-1", config=config)


_ROUTE53_RETRYABLE = {
    "Throttling",
    "ThrottlingException",
    "RequestLimitExceeded",
    "PriorRequestNotComplete",
    "ServiceUnavailable",
    "InternalError",
    "InternalFailure",
}


_START_KEYS = ("StartRecordName", "StartRecordType", "StartRecordIdentifier")
_NEXT_KEYS = ("NextRecordName", "NextRecordType", "NextRecordIdentifier")


class Route53Provider(DnsProvider):
    name = "route53"
    applied_status = "INSYNC"
    min_poll_seconds = ROUTE53_MIN_POLL_SECONDS

    def __init__(self, client):
        self.client = client
        self._zone_ids: dict[str, str] = {}

    def zone_id(self, runbook: Runbook) -> str:
        dns_spec = runbook.spec.dns
        if dns_spec.zone_id:
            return dns_spec.zone_id.rsplit("/", 1)[-1]
        if dns_spec.zone in self._zone_ids:
            return self._zone_ids[dns_spec.zone]
        with self._errors(runbook, "find the hosted zone"):
            found = self.client.list_hosted_zones_by_name(DNSName=dns_spec.zone)["HostedZones"]
        public = [
            z
            for z in found
            if _normal(z["Name"]) == _normal(dns_spec.zone)
            and not z.get("Config", {}).get("PrivateZone", False)
        ]
        matching = public or [z for z in found if _normal(z["Name"]) == _normal(dns_spec.zone)]
        if not matching:
            raise ApplicationError(
                f"Route53 has no hosted zone named {dns_spec.zone} (runbook {runbook.name}, "
                f"records {_records_text(runbook)}): create the zone, or set spec.dns.zone_id "
                "to the hosted zone that holds these records",
                type=ErrorType.DNS_ZONE_NOT_FOUND,
                non_retryable=True,
            )
        if len(matching) > 1:
            ids = ", ".join(z["Id"] for z in matching)
            raise ApplicationError(
                f"Route53 has several hosted zones named {dns_spec.zone} ({ids}): set "
                "spec.dns.zone_id in the runbook to the one drpilot should change",
                type=ErrorType.DNS_ZONE_AMBIGUOUS,
                non_retryable=True,
            )
        zone_id = matching[0]["Id"].rsplit("/", 1)[-1]
        self._zone_ids[dns_spec.zone] = zone_id
        return zone_id

    def current(self, runbook: Runbook) -> Current:
        zone_id = self.zone_id(runbook)
        records = runbook.spec.dns.records
        if len(records) > ROUTE53_PER_RECORD_READS:
            # Many records: one paged listing of the zone costs fewer of the 5 requests/s.
            zone = list(self._listing(runbook, zone_id, None))
            found = {r.name: [s for s in zone if _is(s, r)] for r in records}
        else:
            found = {r.name: list(self._record_sets(runbook, zone_id, r)) for r in records}
        result: Current = {}
        for record in records:
            by_identifier = {record.set_identifier(r): r for r in runbook.regions}
            held: dict[str, WeightedTarget] = {}
            for rrset in found[record.name]:
                region = by_identifier.get(rrset.get("SetIdentifier", ""))
                values = [v["Value"] for v in rrset.get("ResourceRecords", [])]
                if region is None or "Weight" not in rrset or not values:
                    continue  # not one of ours (e.g. a leftover identifier): left alone
                held[region] = WeightedTarget(
                    value=values[0], weight=int(rrset["Weight"]), ttl=int(rrset.get("TTL", 0))
                )
            result[record.name] = held
        return result

    def _record_sets(self, runbook: Runbook, zone_id: str, record: DnsRecord):
        """The record's sets: a listing that starts at it and stops after it."""
        for rrset in self._listing(runbook, zone_id, record, page=len(runbook.regions) + 1):
            if not _is(rrset, record):
                return
            yield rrset

    def _listing(self, runbook: Runbook, zone_id: str, start: DnsRecord | None, page: int = 300):
        kwargs: dict[str, Any] = {"HostedZoneId": zone_id, "MaxItems": str(page)}
        if start is not None:
            kwargs |= {"StartRecordName": start.name, "StartRecordType": start.type.value}
        doing = f"read {start.name}" if start else "read the zone's records"
        seen: set[tuple[str, str, str]] = set()
        while True:
            with self._errors(runbook, doing, zone_id):
                reply = self.client.list_resource_record_sets(**kwargs)
            for rrset in reply["ResourceRecordSets"]:
                key = (rrset["Name"], rrset["Type"], rrset.get("SetIdentifier", ""))
                if key not in seen:
                    seen.add(key)
                    yield rrset
            if not reply.get("IsTruncated"):
                return
            here = tuple(kwargs.get(k) for k in _START_KEYS)
            kwargs.update(
                {k: reply[n] for k, n in zip(_START_KEYS, _NEXT_KEYS, strict=True) if n in reply}
            )
            if "NextRecordIdentifier" not in reply:
                kwargs.pop("StartRecordIdentifier", None)
            if tuple(kwargs.get(k) for k in _START_KEYS) == here:
                # No progress: the API does not page by identifier (moto does not). Take one
                # page as large as Route53 allows from the same place, and stop there.
                if kwargs["MaxItems"] == "300":
                    return
                kwargs["MaxItems"] = "300"

    def apply(
        self, runbook: Runbook, weights: Mapping[str, int], current: Current | None = None
    ) -> ChangeHandle:
        zone_id = self.zone_id(runbook)
        changes = [
            {
                "Action": "UPSERT",
                "ResourceRecordSet": {
                    "Name": record.name,
                    "Type": record.type.value,
                    "SetIdentifier": record.set_identifier(region),
                    "Weight": weights.get(region, 0),
                    "TTL": record.ttl,
                    "ResourceRecords": [{"Value": record.targets[region]}],
                },
            }
            for record in runbook.spec.dns.records
            for region in runbook.regions
        ]
        summary = " ".join(f"{r}={weights.get(r, 0)}" for r in runbook.regions)
        submitted = time.time()
        ids = []
        status = "PENDING"
        for start in range(0, len(changes), ROUTE53_MAX_CHANGES):
            with self._errors(runbook, "change the weights", zone_id):
                reply = self.client.change_resource_record_sets(
                    HostedZoneId=zone_id,
                    ChangeBatch={
                        "Comment": f"drpilot {runbook.name}: {summary}"[:256],
                        "Changes": changes[start : start + ROUTE53_MAX_CHANGES],
                    },
                )
            ids.append(reply["ChangeInfo"]["Id"].rsplit("/", 1)[-1])
            status = reply["ChangeInfo"]["Status"]
        return ChangeHandle(self.name, zone_id, tuple(ids), status, submitted)

    def refresh(self, handle: ChangeHandle) -> ChangeHandle:
        statuses = []
        for change_id in handle.change_ids:
            with self._errors(None, f"wait for change {change_id}", handle.zone):
                statuses.append(self.client.get_change(Id=change_id)["ChangeInfo"]["Status"])
        applied = all(s == self.applied_status for s in statuses)
        status = self.applied_status if applied else "PENDING"
        return ChangeHandle(
            handle.provider, handle.zone, handle.change_ids, status, handle.submitted
        )

    @contextlib.contextmanager
    def _errors(self, runbook: Runbook | None, doing: str, zone_id: str | None = None):
        """Turn boto errors into retryable / non-retryable ApplicationErrors that say why."""
        zone = runbook.spec.dns.zone if runbook else ""
        named = " ".join(part for part in (zone, f"({zone_id})" if zone_id else "") if part)
        where = f"Route53 zone {named or 'lookup'}"
        records = f" records {_records_text(runbook)}" if runbook else ""
        try:
            yield
        except botocore.exceptions.ClientError as exc:
            error = exc.response.get("Error", {})
            code = error.get("Code", "Unknown")
            message = error.get("Message", str(exc))
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            if code in _ROUTE53_RETRYABLE or status >= 500:
                raise ApplicationError(
                    f"Route53 is busy ({code}: {message}) while trying to {doing} in {where}; "
                    "retrying with backoff",
                    type=ErrorType.DNS_PROVIDER_BUSY,
                ) from exc
            if code in ("AccessDenied", "AccessDeniedException"):
                fix = (
                    "grant the worker's AWS role route53:ListHostedZonesByName, "
                    "route53:ListResourceRecordSets, route53:ChangeResourceRecordSets and "
                    f"route53:GetChange on hostedzone/{zone_id or '*'} and change/*"
                )
            elif code == "NoSuchHostedZone":
                fix = "fix spec.dns.zone_id / spec.dns.zone in the runbook or create the zone"
            elif code in ("InvalidChangeBatch", "InvalidInput"):
                fix = "check the records' names, types, TTLs and targets in spec.dns.records"
            elif code == "NoSuchChange":
                fix = "the change id is unknown to Route53; start the DNS step again"
            else:
                fix = "see the provider's message"
            raise ApplicationError(
                f"Route53 refused to {doing} in {where}{records}: {code}: {message}. Fix: {fix}",
                type=ErrorType.DNS_CHANGE_NOT_FOUND if code == "NoSuchChange" else f"Route53{code}",
                non_retryable=True,
            ) from exc
        except (
            botocore.exceptions.EndpointConnectionError,
            botocore.exceptions.ConnectTimeoutError,
            botocore.exceptions.ReadTimeoutError,
            botocore.exceptions.ConnectionClosedError,
        ) as exc:
            raise ApplicationError(
                f"Route53 unreachable while trying to {doing} in {where}: {exc}",
                type=ErrorType.DNS_PROVIDER_UNREACHABLE,
            ) from exc
        except botocore.exceptions.NoCredentialsError as exc:
            raise ApplicationError(
                f"no AWS credentials to {doing} in {where}: give the worker an AWS role or "
                "AWS_* credentials",
                type="Route53NoCredentials",
                non_retryable=True,
            ) from exc


# ====================================================================================
# Cloud DNS


def managed_zone_name(runbook: Runbook) -> str:
    """spec.dns.managed_zone, or the zone's name made a valid zone name (example.dev.
    -> example-dev)."""
    return runbook.spec.dns.managed_zone or runbook.spec.dns.zone.rstrip(".").replace(".", "-")


def clouddns_client(project: str, settings: Settings | None = None) -> dns.Client:
    """A Cloud DNS client; anonymous against a loopback endpoint (the sandbox's emulator)."""
    endpoint = settings.providers.clouddns_endpoint if settings else None
    if endpoint and urlparse(endpoint).hostname in ("127.0.0.1", "localhost", "::1"):
        return dns.Client(
            project=project,
            credentials=AnonymousCredentials(),
            client_options=ClientOptions(api_endpoint=endpoint.rstrip("/")),
        )
    options = ClientOptions(api_endpoint=endpoint.rstrip("/")) if endpoint else None
    try:
        # Finds Application Default Credentials now, not at the first request.
        return dns.Client(project=project, client_options=options)
    except google_auth_errors.DefaultCredentialsError:
        raise ApplicationError(
            f"no Google Application Default Credentials for Cloud DNS (project {project!r}): "
            "give the worker a service account (GOOGLE_APPLICATION_CREDENTIALS, or workload "
            "identity), or run `gcloud auth application-default login`",
            type=ErrorType.CLOUD_DNS_NO_CREDENTIALS,
            non_retryable=True,
        ) from None


def wrr_rrset(runbook: Runbook, record: DnsRecord, weights: Mapping[str, int]) -> dict[str, Any]:
    """The Cloud DNS v1 JSON of a weighted record: one wrr item per region, runbook order."""
    return {
        "name": record.name,
        "type": record.type.value,
        "ttl": record.ttl,
        "routingPolicy": {
            "wrr": {
                "items": [
                    {"weight": weights.get(region, 0), "rrdatas": [record.targets[region]]}
                    for region in runbook.regions
                ]
            }
        },
    }


def regions_of_wrr(runbook: Runbook, record: DnsRecord, items: list[dict]) -> dict[str, dict]:
    """Which region each wrr item serves: by its target, else by position (module doc)."""
    regions = list(runbook.regions)
    owners: dict[str, list[str]] = {}
    for region in regions:
        owners.setdefault(_normal(record.targets[region]), []).append(region)
    found: dict[str, dict] = {}
    unplaced: list[int] = []
    for index, item in enumerate(items):
        datas = item.get("rrdatas") or []
        candidates = owners.get(_normal(datas[0]), []) if len(datas) == 1 else []
        if len(candidates) == 1 and candidates[0] not in found:
            found[candidates[0]] = item
        else:
            unplaced.append(index)
    if len(items) == len(regions):
        for index in unplaced:
            if regions[index] not in found:
                found[regions[index]] = items[index]
    return found


class CloudDnsProvider(DnsProvider):
    name = "clouddns"
    applied_status = "done"
    lists_pending = True

    def __init__(self, client: dns.Client):
        self.client = client

    def _zone_path(self, runbook: Runbook) -> str:
        project = runbook.spec.dns.project or self.client.project
        return f"/projects/{project}/managedZones/{managed_zone_name(runbook)}"

    def _call(
        self, runbook: Runbook | None, doing: str, zone: str, missing: str = "", **request
    ) -> dict:
        where = f"Cloud DNS managed zone {zone}"
        records = f" records {_records_text(runbook)}" if runbook else ""
        try:
            return self.client._connection.api_request(**request)
        except (google_errors.TooManyRequests, google_errors.ServerError) as exc:
            raise ApplicationError(
                f"Cloud DNS is busy ({exc.code}: {exc.message}) while trying to {doing} in "
                f"{where}; retrying with backoff",
                type=ErrorType.DNS_PROVIDER_BUSY,
            ) from exc
        except (google_errors.PreconditionFailed, google_errors.Conflict) as exc:
            # The records changed between our read and our change: a retry reads again.
            raise ApplicationError(
                f"Cloud DNS {where}{records} changed while drpilot tried to {doing} "
                f"({exc.code}: {exc.message}); the retry reads the records again",
                type=ErrorType.DNS_CONCURRENT_CHANGE,
            ) from exc
        except (google_errors.Forbidden, google_errors.Unauthorized) as exc:
            raise ApplicationError(
                f"Cloud DNS refused to {doing} in {where}{records}: {exc.code}: {exc.message}. "
                "Fix: grant the worker's service account roles/dns.admin (or dns.changes.create, "
                "dns.changes.get, dns.resourceRecordSets.list, dns.managedZones.get) on the "
                "project",
                type=ErrorType.CLOUD_DNS_ACCESS_DENIED,
                non_retryable=True,
            ) from exc
        except google_errors.NotFound as exc:
            if missing:
                raise ApplicationError(
                    missing, type=ErrorType.DNS_CHANGE_NOT_FOUND, non_retryable=True
                ) from exc
            raise ApplicationError(
                f"Cloud DNS has no {where} ({exc.message}) for runbook records"
                f"{records}: fix spec.dns.project / spec.dns.managed_zone in the runbook or "
                "create the zone",
                type=ErrorType.DNS_ZONE_NOT_FOUND,
                non_retryable=True,
            ) from exc
        except google_errors.GoogleAPICallError as exc:
            raise ApplicationError(
                f"Cloud DNS refused to {doing} in {where}{records}: {exc.code}: {exc.message}. "
                "Fix: check the records' names, types, TTLs and targets in spec.dns.records",
                type=ErrorType.CLOUD_DNS_INVALID_CHANGE,
                non_retryable=True,
            ) from exc
        except requests_errors.RequestException as exc:
            raise ApplicationError(
                f"Cloud DNS unreachable while trying to {doing} in {where}: {exc}",
                type=ErrorType.DNS_PROVIDER_UNREACHABLE,
            ) from exc

    def _rrsets(self, runbook: Runbook, record: DnsRecord) -> list[dict]:
        path = self._zone_path(runbook)
        reply = self._call(
            runbook,
            f"read {record.name}",
            path,
            method="GET",
            path=f"{path}/rrsets",
            query_params={"name": record.name, "type": record.type.value},
        )
        return [
            r
            for r in reply.get("rrsets", [])
            if _normal(r.get("name", "")) == _normal(record.name) and r.get("type") == record.type
        ]

    def current(self, runbook: Runbook) -> Current:
        return {record.name: self._held(runbook, record)[1] for record in runbook.spec.dns.records}

    def _held(
        self, runbook: Runbook, record: DnsRecord
    ) -> tuple[list[dict], dict[str, WeightedTarget]]:
        rrsets = self._rrsets(runbook, record)
        held: dict[str, WeightedTarget] = {}
        for rrset in rrsets:
            ttl = int(rrset.get("ttl", 0))
            items = rrset.get("routingPolicy", {}).get("wrr", {}).get("items")
            if items is not None:
                for region, item in regions_of_wrr(runbook, record, items).items():
                    held[region] = WeightedTarget(
                        value=(item.get("rrdatas") or [""])[0],
                        weight=round(float(item.get("weight", 0))),
                        ttl=ttl,
                    )
            else:
                # A plain record: the region it points at gets everything.
                datas = rrset.get("rrdatas") or []
                for region in runbook.regions:
                    if datas and _normal(datas[0]) == _normal(record.targets[region]):
                        held[region] = WeightedTarget(value=datas[0], weight=100, ttl=ttl)
        return rrsets, held

    def apply(
        self, runbook: Runbook, weights: Mapping[str, int], current: Current | None = None
    ) -> ChangeHandle:
        deletions: list[dict] = []
        additions: list[dict] = []
        for record in runbook.spec.dns.records:
            # Deletions must equal what is held exactly: read them right before the change.
            deletions.extend(_as_change_rrset(r) for r in self._rrsets(runbook, record))
            additions.append(wrr_rrset(runbook, record, weights))
        path = self._zone_path(runbook)
        submitted = time.time()
        reply = self._call(
            runbook,
            "change the weights",
            path,
            method="POST",
            path=f"{path}/changes",
            data={"additions": additions, "deletions": deletions},
        )
        return ChangeHandle(
            self.name, path, (str(reply["id"]),), str(reply.get("status")), submitted
        )

    def refresh(self, handle: ChangeHandle) -> ChangeHandle:
        statuses = []
        for change_id in handle.change_ids:
            reply = self._call(
                None,
                f"wait for change {change_id}",
                handle.zone,
                missing=f"Cloud DNS knows no change {change_id} in {handle.zone}",
                method="GET",
                path=f"{handle.zone}/changes/{change_id}",
            )
            statuses.append(reply.get("status"))
        applied = all(s == self.applied_status for s in statuses)
        status = self.applied_status if applied else "pending"
        return ChangeHandle(
            handle.provider, handle.zone, handle.change_ids, status, handle.submitted
        )

    def pending(self, runbook: Runbook) -> list[ChangeHandle]:
        path = self._zone_path(runbook)
        reply = self._call(
            runbook,
            "list recent changes",
            path,
            method="GET",
            path=f"{path}/changes",
            query_params={"sortBy": "changeSequence", "sortOrder": "descending", "maxResults": 10},
        )
        return [
            ChangeHandle(self.name, path, (str(c["id"]),), "pending")
            for c in reply.get("changes", [])
            if c.get("status") == "pending"
        ]


def _as_change_rrset(rrset: dict) -> dict:
    """A listed rrset as a change deletion: the API compares it field by field."""
    kept = {
        k: v for k, v in rrset.items() if k in ("name", "type", "ttl", "rrdatas", "routingPolicy")
    }
    return kept


# ====================================================================================
# Choosing a provider, and the activities


def provider_for(runbook: Runbook, settings: Settings) -> DnsProvider:
    """The provider the runbook names, with clients built from settings + environment."""
    if runbook.spec.dns.provider.value == "route53":
        return Route53Provider(route53_client(settings))
    return CloudDnsProvider(clouddns_client(runbook.spec.dns.project or "", settings))


def current_weights(runbook: Runbook, settings: Settings) -> dict[str, int]:
    """Live weight per region of the runbook's first record (the traffic generator's view)."""
    return provider_for(runbook, settings).read(runbook).weights()


def check_weights(runbook: Runbook, weights: Mapping[str, int]) -> None:
    """Refuse (non-retryable) a desired state DNS must never be left in."""
    unknown = sorted(set(weights) - set(runbook.regions))
    if unknown:
        raise ApplicationError(
            f"DNS weights for runbook {runbook.name} name unknown region(s) "
            f"{', '.join(unknown)}; regions are {', '.join(runbook.regions)}",
            type=ErrorType.DNS_WEIGHTS_INVALID,
            non_retryable=True,
        )
    bad = {r: w for r, w in weights.items() if not isinstance(w, int) or not 0 <= w <= 100}
    if bad:
        raise ApplicationError(
            f"DNS weights for runbook {runbook.name} must be integers 0..100, got {bad}",
            type=ErrorType.DNS_WEIGHTS_INVALID,
            non_retryable=True,
        )
    total = sum(weights.values())
    if total != 100:
        raise ApplicationError(
            f"DNS weights for runbook {runbook.name} sum to {total}, not 100: {dict(weights)}",
            type=ErrorType.DNS_WEIGHTS_INVALID,
            non_retryable=True,
        )
    serving = sorted(r for r, w in weights.items() if w > 0)
    needed = max(1, runbook.spec.guardrails.min_healthy_targets)
    if len(serving) < needed:
        raise ApplicationError(
            f"refusing DNS weights {dict(weights)} for {_records_text(runbook)}: "
            f"{len(serving)} region(s) would serve but spec.guardrails.min_healthy_targets "
            f"is {needed}; DNS must never be left with fewer healthy targets",
            type=ErrorType.DNS_GUARDRAIL,
            non_retryable=True,
        )


def _applied(waited: tuple[ChangeHandle, list[ScaledWait]], weights: dict[str, int]) -> DnsApplyResult:
    handle, waits = waited
    return DnsApplyResult(
        change_id=",".join(handle.change_ids),
        status=handle.status,  # type: ignore[arg-type]
        weights=weights,
        seconds_to_apply=round(time.time() - handle.submitted, 3),
        waits=waits,
    )


class DnsActivities:
    """DNS_READ and DNS_APPLY over Route53 or Cloud DNS, as each runbook says."""

    def __init__(
        self,
        route53=None,
        clouddns: dns.Client | None = None,
        settings: Settings | None = None,
    ):
        # Clients are injected by tests; missing ones are built on first use from settings.
        self._route53 = route53
        self._clouddns = clouddns
        self._settings = settings or Settings()
        self._providers: dict[str, DnsProvider] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        return cls(settings=settings)

    def provider(self, runbook: Runbook) -> DnsProvider:
        # One provider per kind, kept: it caches zone ids, and its client's connections.
        kind = runbook.spec.dns.provider.value
        with self._lock:
            if kind not in self._providers:
                if kind == "route53":
                    client = self._route53 or route53_client(self._settings)
                    self._providers[kind] = Route53Provider(client)
                else:
                    # Paths carry the runbook's project, so one client serves every project.
                    project = runbook.spec.dns.project or ""
                    client = self._clouddns or clouddns_client(project, self._settings)
                    self._providers[kind] = CloudDnsProvider(client)
            return self._providers[kind]

    @activity.defn(name=DNS_READ)
    def read(self, input: DnsReadInput) -> DnsState:
        return self.provider(input.runbook).read(input.runbook)

    @activity.defn(name=DNS_APPLY)
    def apply(self, input: DnsApplyInput) -> DnsApplyResult:
        runbook = input.runbook
        check_weights(runbook, input.weights)
        desired = {region: input.weights.get(region, 0) for region in runbook.regions}
        provider = self.provider(runbook)

        def beat(handle: ChangeHandle) -> None:
            activity.heartbeat(handle.details(desired))

        resumed = self._resumable(provider, desired)
        if resumed is not None:
            try:
                return _applied(provider.wait_applied(resumed, beat, speed=input.speed), desired)
            except ApplicationError as error:
                if error.type != ErrorType.DNS_CHANGE_NOT_FOUND:
                    raise
                # The provider forgot that change (or never had it): start from a fresh read.
                activity.logger.warning("%s; reading the records again", error.message)
        current = provider.current(runbook)
        if provider.matches(runbook, desired, current):
            if activity.info().attempt == 1 or provider.lists_pending:
                # Already in place; still wait out a change of ours that is not applied.
                for pending in provider.pending(runbook):
                    provider.wait_applied(pending, beat, speed=input.speed)
                return DnsApplyResult(change_id=None, status="unchanged", weights=desired)
            # A retry that finds its weights in place but holds no change id: the attempt
            # before may have made this change and died before heartbeating it, and Route53
            # cannot list a zone's pending changes. Submit the same UPSERTs again (the
            # records do not move) and wait for that change: Route53 applies a zone's
            # changes in order, so when it is INSYNC the earlier one is too.
            activity.logger.info("records already hold %s on a retry; confirming with a fresh change", desired)
        handle = provider.apply(runbook, desired, current)
        activity.logger.info(
            "DNS change %s submitted for %s: %s",
            ",".join(handle.change_ids),
            _records_text(runbook),
            desired,
        )
        beat(handle)
        return _applied(provider.wait_applied(handle, beat, speed=input.speed), desired)

    @staticmethod
    def _resumable(provider: DnsProvider, desired: dict[str, int]) -> ChangeHandle | None:
        """The change an earlier attempt made for these same weights, from its heartbeat."""
        details = activity.info().heartbeat_details
        if not details:
            return None
        last = details[0]
        handle = ChangeHandle.from_details(last)
        if handle is None or handle.provider != provider.name:
            return None
        if dict(last.get("weights") or {}) != desired:
            return None
        return handle

    def all(self) -> list[Callable]:
        return [self.read, self.apply]

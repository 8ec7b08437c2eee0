"""Route53: a runbook's weighted records as one record set per region, and its errors.

Each region's weighted target is its own record set, SetIdentifier =
`record.set_identifier(region)` (the region name unless the runbook says otherwise). A
change is one change batch of UPSERTs (split only past ROUTE53_MAX_CHANGES), applied when
Route53 reports it INSYNC. Route53 cannot list a zone's pending changes: a retry that finds
its weights in place without a change id re-submits them (activities.py says why).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping
from typing import Any

import boto3
import botocore.exceptions
from temporalio.exceptions import ApplicationError

from activities.contracts import ErrorType
from activities.credentials import aws_config
from activities.dns.provider import (
    ChangeHandle,
    Current,
    DnsProvider,
    WeightedTarget,
    normal,
    records_text,
)
from drpilot.domain.runbook import DnsRecord, Runbook
from drpilot.domain.settings import Settings

# Route53 accepts at most 1,000 records per ChangeResourceRecordSets; drpilot keeps its
# batches at 100 changes so a batch stays well inside the 32,000-character limit too.
ROUTE53_MAX_CHANGES = 100
# GetChange of an id Route53 never issued: answered (NoSuchChange / InvalidInput) when the
# control plane is up, 5xx or nothing when it is down. Read-only, so a safe probe.
PROBE_CHANGE_ID = "C0DRPILOTPROBE0000000"
# Route53 allows 5 API requests per second per account: one poller at most 4.
# Up to this many records are read one listing each; more, by listing the zone once.
ROUTE53_PER_RECORD_READS = 10
ROUTE53_MIN_POLL_SECONDS = 0.25


def route53_client(settings: Settings | None = None):
    """A Route53 client from the environment (AWS_ENDPOINT_URL points it at the twin)."""
    # Standard retries back off with jitter on Throttling / PriorRequestNotComplete / 5xx
    # inside one attempt; what still fails is left to the activity's retry policy.
    config = aws_config(read_timeout=30, attempts=4)
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


def health_checks(runbook: Runbook) -> dict[str, str]:
    """Region -> the health check its records carry (its routing control's; none for switch: weights)."""
    arc = runbook.spec.dns.routing_controls
    return {region: control.health_check for region, control in arc.controls.items()} if arc else {}


def _is(rrset: dict, record: DnsRecord) -> bool:
    """A Route53 record set belongs to the runbook record (same name and type)."""
    return normal(rrset["Name"]) == normal(record.name) and rrset["Type"] == record.type


class Route53Provider(DnsProvider):
    name = "route53"
    applied_status = "INSYNC"
    pending_status = "PENDING"
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
            if normal(z["Name"]) == normal(dns_spec.zone)
            and not z.get("Config", {}).get("PrivateZone", False)
        ]
        matching = public or [z for z in found if normal(z["Name"]) == normal(dns_spec.zone)]
        if not matching:
            raise ApplicationError(
                f"Route53 has no hosted zone named {dns_spec.zone} (runbook {runbook.name}, "
                f"records {records_text(runbook)}): create the zone, or set spec.dns.zone_id "
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

    def prepare(self, runbook: Runbook) -> None:
        self.zone_id(runbook)

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

    def without_health_check(self, runbook: Runbook) -> list[str]:
        """"record (region)" of each weighted set not carrying its region's health check."""
        zone_id, wanted = self.zone_id(runbook), health_checks(runbook)
        missing = []
        for record in runbook.spec.dns.records:
            carried = {
                rrset.get("SetIdentifier", ""): rrset.get("HealthCheckId")
                for rrset in self._record_sets(runbook, zone_id, record)
            }
            missing += [
                f"{record.name} ({region})" for region, check in wanted.items()
                if carried.get(record.set_identifier(region)) != check
            ]
        return missing

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
        checks = health_checks(runbook)
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
                    # A region switched by a routing control keeps its control's health check.
                    **({"HealthCheckId": checks[region]} if region in checks else {}),
                },
            }
            for record in runbook.spec.dns.records
            for region in runbook.regions
        ]
        summary = " ".join(f"{r}={weights.get(r, 0)}" for r in runbook.regions)
        submitted = time.time()
        ids = []
        status = self.pending_status
        for start in range(0, len(changes), ROUTE53_MAX_CHANGES):
            with self._errors(runbook, "change the weights", zone_id, control_plane=True):
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

    def change_status(self, handle: ChangeHandle, change_id: str) -> str:
        with self._errors(None, f"wait for change {change_id}", handle.zone, control_plane=True):
            return self.client.get_change(Id=change_id)["ChangeInfo"]["Status"]

    def check_control_plane(self, runbook: Runbook) -> None:
        """Raise DNS_CONTROL_PLANE_DOWN (non-retryable: the caller decides) unless Route53's
        control plane answers a GetChange; any answer, even "no such change", is an answer."""
        try:
            with self._errors(runbook, "reach Route53's control plane", control_plane=True):
                self.client.get_change(Id=PROBE_CHANGE_ID)
        except ApplicationError as error:
            if error.type == ErrorType.DNS_CONTROL_PLANE_DOWN:
                raise ApplicationError(error.message, type=error.type, non_retryable=True) from error
            if error.non_retryable:
                return  # refused, so it answered
            raise

    @contextlib.contextmanager
    def _errors(self, runbook: Runbook | None, doing: str, zone_id: str | None = None, *, control_plane: bool = False):
        """Turn boto errors into retryable / non-retryable ApplicationErrors that say why."""
        zone = runbook.spec.dns.zone if runbook else ""
        named = " ".join(part for part in (zone, f"({zone_id})" if zone_id else "") if part)
        where = f"Route53 zone {named or 'lookup'}"
        records = f" records {records_text(runbook)}" if runbook else ""
        try:
            yield
        except botocore.exceptions.ClientError as exc:
            error = exc.response.get("Error", {})
            code = error.get("Code", "Unknown")
            message = error.get("Message", str(exc))
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            if control_plane and status >= 500:
                raise ApplicationError(
                    f"Route53's control plane does not answer ({code}: {message}) while trying to {doing} "
                    f"in {where}",
                    type=ErrorType.DNS_CONTROL_PLANE_DOWN,
                ) from exc
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
                type=ErrorType.DNS_CHANGE_NOT_FOUND if code == "NoSuchChange" else ErrorType.route53_refused(code),
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
                type=ErrorType.DNS_CONTROL_PLANE_DOWN if control_plane else ErrorType.DNS_PROVIDER_UNREACHABLE,
            ) from exc
        except botocore.exceptions.NoCredentialsError as exc:
            raise ApplicationError(
                f"no AWS credentials to {doing} in {where}: give the worker an AWS role or "
                "AWS_* credentials",
                type=ErrorType.ROUTE53_NO_CREDENTIALS,
                non_retryable=True,
            ) from exc


"""Cloud DNS: a runbook's weighted records as one `routingPolicy.wrr` record set each.

A wrr record set's items carry no identifier, so drpilot writes one item per region in the
runbook's region order, each item's rrdatas being that region's target. Reading maps an
item to the region whose target equals the item's rrdatas; items whose target is ambiguous
or unknown fall back to their position in the runbook's region order (when the counts
agree). A change is one Cloud DNS change of deletions + additions, which the API applies
atomically; it is applied when its status is done, and a zone's pending changes can be
listed, so a retry always finds the change an earlier attempt made.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlparse

from google.api_core import exceptions as google_errors
from google.api_core.client_options import ClientOptions
from google.auth import exceptions as google_auth_errors
from google.auth.credentials import AnonymousCredentials
from google.cloud import dns
from requests import exceptions as requests_errors
from temporalio.exceptions import ApplicationError

from activities.contracts import ErrorType
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

# Seconds for one Cloud DNS API call (google-cloud's default is 60): a silent endpoint ends the
# call, and the activity's retry (or its caller's poll) takes over.
REQUEST_SECONDS = 30.0

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
        owners.setdefault(normal(record.targets[region]), []).append(region)
    found: dict[str, dict] = {}
    unplaced: list[int] = []
    for index, item in enumerate(items):
        datas = item.get("rrdatas") or []
        candidates = owners.get(normal(datas[0]), []) if len(datas) == 1 else []
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
    pending_status = "pending"
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
        records = f" records {records_text(runbook)}" if runbook else ""
        try:
            return self.client._connection.api_request(timeout=REQUEST_SECONDS, **request)
        except requests_errors.RequestException as exc:
            raise ApplicationError(
                f"Cloud DNS unreachable while trying to {doing} in {where}: {exc}",
                type=ErrorType.DNS_PROVIDER_UNREACHABLE,
            ) from exc
        except google_errors.GoogleAPICallError as exc:
            said = f"{exc.code}: {exc.message}"
            grant = (
                "Fix: grant the worker's service account roles/dns.admin (or dns.changes.create, "
                "dns.changes.get, dns.resourceRecordSets.list, dns.managedZones.get) on the project"
            )
            # The first row whose exceptions match: what the caller is told, the error type,
            # whether a retry can help.
            answers = [
                ((google_errors.TooManyRequests, google_errors.ServerError),
                 f"Cloud DNS is busy ({said}) while trying to {doing} in {where}; retrying with backoff",
                 ErrorType.DNS_PROVIDER_BUSY, True),
                # The records changed between our read and our change: a retry reads again.
                ((google_errors.PreconditionFailed, google_errors.Conflict),
                 f"Cloud DNS {where}{records} changed while drpilot tried to {doing} ({said}); "
                 "the retry reads the records again",
                 ErrorType.DNS_CONCURRENT_CHANGE, True),
                ((google_errors.Forbidden, google_errors.Unauthorized),
                 f"Cloud DNS refused to {doing} in {where}{records}: {said}. {grant}",
                 ErrorType.CLOUD_DNS_ACCESS_DENIED, False),
                ((google_errors.NotFound,),
                 missing or (
                     f"Cloud DNS has no {where} ({exc.message}) for runbook records{records}: fix "
                     "spec.dns.project / spec.dns.managed_zone in the runbook or create the zone"
                 ),
                 ErrorType.DNS_CHANGE_NOT_FOUND if missing else ErrorType.DNS_ZONE_NOT_FOUND, False),
            ]
            message, kind, retryable = next(
                ((message, kind, retryable) for kinds, message, kind, retryable in answers if isinstance(exc, kinds)),
                (f"Cloud DNS refused to {doing} in {where}{records}: {said}. Fix: check the records' "
                 "names, types, TTLs and targets in spec.dns.records", ErrorType.CLOUD_DNS_INVALID_CHANGE, False),
            )
            raise ApplicationError(message, type=kind, non_retryable=not retryable) from exc

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
            if normal(r.get("name", "")) == normal(record.name) and r.get("type") == record.type
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
                    if datas and normal(datas[0]) == normal(record.targets[region]):
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

    def change_status(self, handle: ChangeHandle, change_id: str) -> str:
        reply = self._call(
            None,
            f"wait for change {change_id}",
            handle.zone,
            missing=f"Cloud DNS knows no change {change_id} in {handle.zone}",
            method="GET",
            path=f"{handle.zone}/changes/{change_id}",
        )
        return reply.get("status")

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
            ChangeHandle(self.name, path, (str(c["id"]),), self.pending_status)
            for c in reply.get("changes", [])
            if c.get("status") == self.pending_status
        ]


def _as_change_rrset(rrset: dict) -> dict:
    """A listed rrset as a change deletion: the API compares it field by field."""
    kept = {
        k: v for k, v in rrset.items() if k in ("name", "type", "ttl", "rrdatas", "routingPolicy")
    }
    return kept

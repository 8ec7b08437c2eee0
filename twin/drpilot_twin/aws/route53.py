"""The runbook's weighted records in the twin's Route53 (moto, behind the AWS front): seeded
with the normal weights, read back as the weight each region gets, and set back to them on
reset. Plain boto3 calls, not drpilot's Route53 provider: the twin stands in for Route53 and
must not be built from the code it is meant to test."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping

import boto3

from drpilot.domain.runbook import DnsRecord, Runbook

# Route53 takes at most 1,000 records per ChangeResourceRecordSets request (and 32,000
# characters of values): batches of 100 changes stay well inside both.
CHANGES_PER_BATCH = 100
# The largest page ListResourceRecordSets returns; one record's weighted sets (one per
# region) fit in it.
PAGE = "300"


def seed_route53(session_or_client, runbook: Runbook) -> str:
    """Create the runbook's hosted zone (unless one by that name exists) and, for every
    record, one weighted record set per region: SetIdentifier = record.set_identifier(region),
    Weight = runbook.normal_weights()[region] (drpilot's weights sum to 100; Route53 takes
    0..255), the record's TTL and the region's target. Returns the hosted zone id moto
    chose (no /hostedzone/ prefix). Idempotent: running it again leaves one zone and the
    same records.

    moto chooses zone ids, so a runbook's `spec.dns.zone_id` is honoured by the AWS front
    (`AwsFront.alias_hosted_zone`), and calls made straight to moto, like these, use the
    zone by name and the id moto chose.
    """
    client = (
        session_or_client.client("route53")
        if isinstance(session_or_client, boto3.session.Session)
        else session_or_client
    )
    zone = runbook.spec.dns.zone
    found = client.list_hosted_zones_by_name(DNSName=zone)["HostedZones"]
    existing = [z for z in found if _normal(z["Name"]) == _normal(zone)]
    if existing:
        zone_id = existing[0]["Id"]
    else:
        zone_id = client.create_hosted_zone(
            Name=zone,
            CallerReference=f"drpilot-sandbox-{runbook.name}-{uuid.uuid4()}",
            HostedZoneConfig={"Comment": f"drpilot sandbox: {runbook.name}", "PrivateZone": False},
        )["HostedZone"]["Id"]
    zone_id = zone_id.rsplit("/", 1)[-1]
    Route53Records(client, runbook, zone_id).put(runbook.normal_weights())
    return zone_id


class Route53Records:
    """The runbook's weighted record sets in one hosted zone, by region: a region's set is
    the one whose SetIdentifier is `record.set_identifier(region)` (module doc of seed)."""

    def __init__(self, client, runbook: Runbook, zone_id: str):
        self.client, self.runbook, self.zone_id = client, runbook, zone_id

    def weights(self) -> dict[str, int]:
        """The weight each region gets (the first record's: all records move together);
        0 for a region without a weighted set."""
        held = self._held(self.runbook.spec.dns.records[0])
        return {region: held[region][1] if region in held else 0 for region in self.runbook.regions}

    def answered(self, healthy: Callable[[str | None], bool]) -> dict[str, int]:
        """The share of DNS answers (percent) each region gets, as Route53 chooses among the
        first record's weighted sets given each set's health check (`healthy(id)`), per
        "How Amazon Route 53 chooses records when health checking is configured": healthy
        sets with a weight above 0 by weight; if there are none, the healthy zero-weight
        sets, equally; if no set is healthy, Route53 answers as if all were (by weight, or
        equally when every weight is 0)."""
        held = self._held(self.runbook.spec.dns.records[0])
        sets = {region: (weight, healthy(check)) for region, (_, weight, _, check) in held.items()}
        chosen = {r: w for r, (w, ok) in sets.items() if ok and w > 0}
        if not chosen:
            chosen = {r: 1 for r, (w, ok) in sets.items() if ok and w == 0}
        if not chosen:
            chosen = {r: w for r, (w, _) in sets.items() if w > 0} or {r: 1 for r in sets}
        total = sum(chosen.values())
        shares = {r: round(100 * chosen.get(r, 0) / total) if total else 0 for r in self.runbook.regions}
        return shares

    def put(self, weights: Mapping[str, int]) -> None:
        """Every record at `weights`, the runbook's targets and TTL; no change when they are."""
        checks = _health_checks(self.runbook)
        wanted = {
            record.name: {region: self._wanted(record, region, weights, checks) for region in self.runbook.regions}
            for record in self.runbook.spec.dns.records
        }
        if all(self._held(record) == wanted[record.name] for record in self.runbook.spec.dns.records):
            return
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
                    # A region switched by a routing control carries its health check.
                    **({"HealthCheckId": checks[region]} if region in checks else {}),
                },
            }
            for record in self.runbook.spec.dns.records
            for region in self.runbook.regions
        ]
        for start in range(0, len(changes), CHANGES_PER_BATCH):
            self.client.change_resource_record_sets(
                HostedZoneId=self.zone_id,
                ChangeBatch={
                    "Comment": f"drpilot sandbox: {self.runbook.name}",
                    "Changes": changes[start : start + CHANGES_PER_BATCH],
                },
            )

    def _held(self, record: DnsRecord) -> dict[str, tuple[str, int, int, str | None]]:
        """Region -> (target, weight, TTL, health check id) of the record's weighted sets; sets with an
        identifier no region uses are someone else's and left out."""
        by_identifier = {record.set_identifier(region): region for region in self.runbook.regions}
        # The listing starts at the record's name and type and runs on in Route53's order.
        listed = self.client.list_resource_record_sets(
            HostedZoneId=self.zone_id,
            StartRecordName=record.name,
            StartRecordType=record.type.value,
            MaxItems=PAGE,
        )["ResourceRecordSets"]
        held = {}
        for rrset in listed:
            if _normal(rrset["Name"]) != _normal(record.name) or rrset["Type"] != record.type.value:
                continue
            region = by_identifier.get(rrset.get("SetIdentifier", ""))
            values = [v["Value"] for v in rrset.get("ResourceRecords", [])]
            if region is not None and "Weight" in rrset and values:
                held[region] = (
                    _normal(values[0]), int(rrset["Weight"]), int(rrset.get("TTL", 0)), rrset.get("HealthCheckId")
                )
        return held

    @staticmethod
    def _wanted(
        record: DnsRecord, region: str, weights: Mapping[str, int], checks: Mapping[str, str]
    ) -> tuple[str, int, int, str | None]:
        return _normal(record.targets[region]), weights.get(region, 0), record.ttl, checks.get(region)


def _health_checks(runbook: Runbook) -> dict[str, str]:
    """Region -> the health check of its routing control (none for switch: weights)."""
    arc = runbook.spec.dns.routing_controls
    return {region: control.health_check for region, control in arc.controls.items()} if arc else {}


def _normal(name: str) -> str:
    """DNS names compare case-insensitively and with or without the root dot."""
    return name.strip().lower().rstrip(".")

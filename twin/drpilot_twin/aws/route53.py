"""Seed the twin's Route53 (moto, behind the AWS front) with a runbook's hosted zone and
weighted records, so drpilot finds what the runbook describes."""

from __future__ import annotations

import uuid

import boto3

from activities.dns import Route53Provider
from drpilot.domain.runbook import Runbook


def seed_route53(session_or_client, runbook: Runbook) -> str:
    """Create the runbook's hosted zone (unless one by that name exists) and, for every
    record, one weighted record set per region: SetIdentifier = record.set_identifier(region),
    Weight = runbook.normal_weights()[region] (drpilot's weights sum to 100; Route53 takes
    0..255), the record's TTL and the region's target. Returns the hosted zone id moto
    chose (no /hostedzone/ prefix). Idempotent: running it again leaves one zone and the
    same records.

    moto chooses zone ids, so a runbook's `spec.dns.zone_id` is honoured by the AWS front
    (`AwsFront.alias_hosted_zone`), and calls made straight to moto, like these, find the
    zone by name (`by_zone_name`).
    """
    client = (
        session_or_client.client("route53")
        if isinstance(session_or_client, boto3.session.Session)
        else session_or_client
    )
    zone = runbook.spec.dns.zone
    found = client.list_hosted_zones_by_name(DNSName=zone)["HostedZones"]
    existing = [z for z in found if z["Name"].rstrip(".") == zone.rstrip(".")]
    if existing:
        zone_id = existing[0]["Id"]
    else:
        zone_id = client.create_hosted_zone(
            Name=zone,
            CallerReference=f"drpilot-sandbox-{runbook.name}-{uuid.uuid4()}",
            HostedZoneConfig={"Comment": f"drpilot sandbox: {runbook.name}", "PrivateZone": False},
        )["HostedZone"]["Id"]
    zone_id = zone_id.rsplit("/", 1)[-1]
    provider = Route53Provider(client)
    by_name = by_zone_name(runbook)
    weights = runbook.normal_weights()
    if not provider.matches(by_name, weights, provider.current(by_name)):
        provider.apply(by_name, weights)
    return zone_id


def by_zone_name(runbook: Runbook) -> Runbook:
    """The runbook without `spec.dns.zone_id`: for the twin's own calls straight to moto,
    which knows the zone by name and by the id it chose, not by the runbook's."""
    if runbook.spec.dns.zone_id is None:
        return runbook
    dns = runbook.spec.dns.model_copy(update={"zone_id": None})
    return runbook.model_copy(update={"spec": runbook.spec.model_copy(update={"dns": dns})})

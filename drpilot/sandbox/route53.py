"""Seed the twin's Route53 (moto, behind the AWS front) with a runbook's hosted zone and
weighted records, so drpilot finds what the runbook describes."""

from __future__ import annotations

import uuid

import boto3

from activities.dns import Route53Provider
from drpilot.runbook import Runbook


def seed_route53(session_or_client, runbook: Runbook) -> str:
    """Create the runbook's hosted zone (unless one by that name exists) and, for every
    record, one weighted record set per region: SetIdentifier = record.set_identifier(region),
    Weight = runbook.normal_weights()[region] (drpilot's weights sum to 100; Route53 takes
    0..255), the record's TTL and the region's target. Returns the hosted zone id (no
    /hostedzone/ prefix). Idempotent: running it again leaves one zone and the same records.

    `spec.dns.zone_id` cannot be honoured here (Route53 chooses ids); a runbook that sets it
    will not find this zone, so rehearse with the id left out.
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
    weights = runbook.normal_weights()
    if not provider.matches(runbook, weights, provider.current(runbook)):
        provider.apply(runbook, weights)
    return zone_id

"""The decisions of a run, as pure functions: which regions take traffic and with what weights.

No Temporal, no I/O: the workflows call these, and so does `drpilot runbook plan` (a dry
run against live state), so what the plan prints is exactly what a run would do.
"""

from __future__ import annotations

import json
from datetime import datetime

from drpilot.domain.runbook import (
    ApprovalPolicy,
    DnsProvider,
    DnsSwitch,
    Role,
    Runbook,
    split_weights,
)


class PlanError(ValueError):
    """The requested run cannot be planned for this runbook; the text says why and what to do."""


def check_region(runbook: Runbook, region: str, what: str) -> None:
    if region not in runbook.regions:
        raise PlanError(
            f"{what} {region!r} is not a region of runbook {runbook.name!r}; "
            f"regions are {', '.join(sorted(runbook.regions))}"
        )


def failover_targets(runbook: Runbook, failed: str, requested: list[str] | None) -> list[str]:
    """The regions to prepare and gate: as requested, else the standby(s), else the other
    serving regions (active-active: the survivors absorb the failed region's share)."""
    check_region(runbook, failed, "failed region")
    if requested:
        for region in requested:
            check_region(runbook, region, "target region")
            if region == failed:
                raise PlanError(f"target region {region!r} is the failed region; choose another with --to")
        return list(dict.fromkeys(requested))
    others = {n: r for n, r in runbook.regions.items() if n != failed}
    standbys = [n for n, r in others.items() if r.role is Role.standby]
    if standbys:
        return standbys
    return list(others)


def failover_weights(
    runbook: Runbook,
    failed: str,
    targets: list[str],
    before: dict[str, int],
    exclude: frozenset[str] = frozenset(),
) -> dict[str, int]:
    """DNS weights after failing `failed`: the targets plus every region already serving
    share 100 in proportion to capacity; the failed region (and `exclude`) get 0."""
    gone = {failed, *exclude}
    serving = [n for n in runbook.regions if n not in gone and (before.get(n, 0) > 0 or n in targets)]
    if not serving:
        raise PlanError(f"no region is left to serve once {failed!r} is failed; pass --to REGION")
    weights = split_weights(
        {n: runbook.regions[n].capacity for n in serving}, {n: 0 for n in runbook.regions}
    )
    check_weights(runbook, weights)
    return weights


def failback_home(runbook: Runbook, original: str, start: dict[str, int]) -> dict[str, int]:
    """Where a failback ends: the original region back, serving regions still serving, and
    standby regions empty again; shares in proportion to capacity."""
    check_region(runbook, original, "original region")
    serving = [
        n
        for n, r in runbook.regions.items()
        if n == original or (start.get(n, 0) > 0 and r.role is not Role.standby)
    ]
    weights = split_weights(
        {n: runbook.regions[n].capacity for n in serving}, {n: 0 for n in runbook.regions}
    )
    check_weights(runbook, weights)
    return weights


def shift_weights(start: dict[str, int], home: dict[str, int], percent: int) -> dict[str, int]:
    """Weights `percent` of the way from `start` to `home`, summing to 100 (largest remainder).

    With two regions this is simply "the original region gets `percent`"."""
    regions = sorted(set(start) | set(home))
    exact = {n: start.get(n, 0) + (home.get(n, 0) - start.get(n, 0)) * percent / 100 for n in regions}
    weights = {n: int(v) for n, v in exact.items()}
    leftover = 100 - sum(weights.values())
    for n in sorted(regions, key=lambda n: (weights[n] - exact[n], n))[: max(leftover, 0)]:
        weights[n] += 1
    return weights


def check_weights(runbook: Runbook, weights: dict[str, int]) -> None:
    """The engine's invariant, whatever the runbook says: never zero weighted targets."""
    serving = [n for n, w in weights.items() if w > 0]
    needed = max(1, runbook.spec.guardrails.min_healthy_targets)
    if len(serving) < needed:
        raise PlanError(
            f"these weights leave {len(serving)} serving region(s) ({weights}); runbook "
            f"{runbook.name!r} requires at least {needed} (spec.guardrails.min_healthy_targets)"
        )


def needs_control_plane(runbook: Runbook) -> bool:
    """A failover of this runbook moves traffic through Route53's control plane
    (ChangeResourceRecordSets), served from us-east-1 only."""
    return runbook.spec.dns.provider is DnsProvider.route53 and runbook.spec.dns.switch is DnsSwitch.weights


def manual_change(runbook: Runbook, weights: dict[str, int]) -> str:
    """The AWS CLI command that sets `weights` by hand: the change a failover would make."""
    changes = [
        {"Action": "UPSERT", "ResourceRecordSet": {
            "Name": record.name, "Type": record.type.value, "SetIdentifier": record.set_identifier(region),
            "Weight": weights.get(region, 0), "TTL": record.ttl, "ResourceRecords": [{"Value": record.targets[region]}],
        }}
        for record in runbook.spec.dns.records
        for region in runbook.regions
    ]
    zone = runbook.spec.dns.zone_id or f"$(aws route53 list-hosted-zones-by-name --dns-name {runbook.spec.dns.zone} --query 'HostedZones[0].Id' --output text)"
    batch = json.dumps({"Changes": changes}, separators=(",", ":"))
    return f"aws route53 change-resource-record-sets --hosted-zone-id {zone} --change-batch '{batch}'"


def control_plane_down(runbook: Runbook, weights: dict[str, int], cause: str) -> str:
    """One line: why a failover switched by weights stops before it changes anything."""
    return (
        f"Route53's control plane (ChangeResourceRecordSets, GetChange; served from us-east-1) does not answer "
        f"({cause}), and runbook {runbook.name} switches by weights, so the failover stopped before changing "
        f"anything. Set DNS to {format_weights(weights)} by hand once it answers: {manual_change(runbook, weights)} "
        "-- or switch this runbook by routing controls (spec.dns.switch: routing_controls)"
    )


def approval_required(policy: ApprovalPolicy, trigger: str) -> bool:
    if policy is ApprovalPolicy.always:
        return True
    if policy is ApprovalPolicy.never:
        return False
    # Alerts and drills start runs nobody at a terminal asked for.
    return trigger in ("alert", "drill")


def serving(weights: dict[str, int]) -> list[str]:
    return [n for n, w in sorted(weights.items()) if w > 0]


def format_weights(weights: dict[str, int]) -> str:
    return ", ".join(f"{n} {w}" for n, w in sorted(weights.items())) or "none"


def rpo_lags(runbook: Runbook, targets: list, sources: list) -> list[str]:
    """Each target copy of a model whose manifest is older than the source's by more than
    the RPO (activities' VerifyResult; a copy without a manifest time is not judged)."""
    rpo = runbook.spec.objectives.rpo
    newest = {(s.model, s.version): s.manifest_created_at for s in sources if s.manifest_created_at}
    problems = []
    for t in targets:
        source = newest.get((t.model, t.version))
        if source is None or t.manifest_created_at is None:
            continue
        lag = source - t.manifest_created_at
        if lag > rpo:
            problems.append(f"{t.region} {t.model} {t.version} manifest is {lag.total_seconds():.0f}s behind the source's")
    return problems


def backup_ages(runbook: Runbook, backups: list, now: datetime) -> list[str]:
    """Velero backups (VeleroBackupInfo) that completed longer ago than the RPO."""
    rpo = runbook.spec.objectives.rpo
    problems = []
    for b in backups:
        if b.completed_at is None:
            problems.append(f"velero backup {b.name} has no completion time")
        elif now - b.completed_at > rpo:
            problems.append(f"velero backup {b.name} completed {(now - b.completed_at).total_seconds():.0f}s ago")
    return problems

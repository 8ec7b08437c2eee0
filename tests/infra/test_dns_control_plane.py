"""`drpilot runbook plan` warns when a failover leaves the region that serves its DNS
provider's control plane (Route53: us-east-1), and only then."""

from __future__ import annotations

import os
import subprocess

from drpilot.domain.loader import load_runbook
from drpilot.frontdoor.dry_run import dns_control_plane_warning
from tests.support.paths import ARC_RUNBOOK, CLOUDDNS_RUNBOOK, DRPILOT, ROUTE53_RUNBOOK


def plan(twin, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(DRPILOT), "runbook", "plan", str(ROUTE53_RUNBOOK), "--action", "failover", *args],
        env={**os.environ, **twin.env()}, capture_output=True, text=True, timeout=60,
    )


def test_plan_warns_when_failing_over_away_from_the_route53_control_plane(twin_factory):
    twin = twin_factory(ROUTE53_RUNBOOK)
    away = plan(twin, "--from", "us-east-1")
    assert away.returncode == 0, away.stderr
    warnings = [line for line in away.stdout.splitlines() if line.startswith("  warning: ")]
    assert warnings == [
        "  warning: this failover leaves us-east-1, where the route53 control plane is served from: "
        "in an outage of us-east-1 the DNS change may be the step that cannot be made. Rehearse it, "
        "or switch by Route 53 ARC routing controls (spec.dns.switch: routing_controls); "
        "see README, \"Route 53's control plane\""
    ]
    toward = plan(twin, "--from", "us-west-2")
    assert toward.returncode == 0, toward.stderr
    assert "warning:" not in toward.stdout


def test_cloud_dns_has_no_regional_control_plane():
    rb = load_runbook(CLOUDDNS_RUNBOOK)
    # Even a region named us-east-1 hosts no Cloud DNS control plane.
    assert all(dns_control_plane_warning(rb, region) is None for region in [*rb.regions, "us-east-1"])
    route53 = load_runbook(ROUTE53_RUNBOOK)
    assert [r for r in route53.regions if dns_control_plane_warning(route53, r)] == ["us-east-1"]
    # Switched by routing controls, a failover needs ARC's data plane only.
    arc = load_runbook(ARC_RUNBOOK)
    assert all(dns_control_plane_warning(arc, region) is None for region in arc.regions)

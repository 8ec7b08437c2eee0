"""What a shift step means when more than two regions serve: `runbook plan` prints every
region's weights at every step, and says when a step is a small share of all traffic."""

from __future__ import annotations

from drpilot.domain.loader import load_runbook
from drpilot.frontdoor.dry_run import shift_change, small_step
from tests.support.paths import RUNBOOKS

GCP = load_runbook(RUNBOOKS / "llm-inference-clouddns.yaml")  # us-central1 home share 50 of 3 regions
AFTER_FAILOVER = {"us-central1": 0, "europe-west4": 50, "asia-southeast1": 50}
HOME = {"us-central1": 50, "europe-west4": 25, "asia-southeast1": 25}


def test_every_region_has_its_weight_at_every_step():
    lines = shift_change(GCP, AFTER_FAILOVER, HOME).splitlines()
    assert lines[0].endswith("each step is that percent of the way from these weights to home:")
    assert [line.strip() for line in lines[1:]] == [
        "10%: asia-southeast1 48, europe-west4 47, us-central1 5",
        "25%: asia-southeast1 44, europe-west4 44, us-central1 12",
        "50%: asia-southeast1 38, europe-west4 37, us-central1 25",
        "75%: asia-southeast1 31, europe-west4 31, us-central1 38",
        "100%: asia-southeast1 25, europe-west4 25, us-central1 50",
    ]


def test_a_step_smaller_than_its_percent_says_what_the_analysis_does_with_few_requests():
    note = small_step(GCP, AFTER_FAILOVER, HOME, "us-central1")
    assert note == (
        "the 10% step gives us-central1 5% of all traffic (10% of the way to its home share of 50%): "
        "a bake in which it serves fewer than 1 request(s) (spec.traffic_shift.rollback.min_requests) is "
        "judged by probe requests the analysis sends itself (100 or more), not by users' traffic"
    )
    # Two regions: the step is the returning region's share of all traffic, nothing to say.
    two = {"us-central1": 0, "europe-west4": 100, "asia-southeast1": 0}
    assert small_step(GCP, two, {"us-central1": 100, "europe-west4": 0, "asia-southeast1": 0}, "us-central1") is None

"""The run's decisions as pure functions: targets, weights, the shift's steps, approvals."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drpilot.domain.runbook import ApprovalPolicy
from tests.support.runbooks import runbook
from workflows.plan import (
    PlanError,
    approval_required,
    failback_home,
    failover_targets,
    failover_weights,
    shift_weights,
)

ROUTE53 = runbook("llm-inference.yaml")
CLOUDDNS = runbook("llm-inference-clouddns.yaml")


def test_standby_is_the_default_target():
    assert failover_targets(ROUTE53, "us-east-1", None) == ["us-west-2"]
    weights = failover_weights(ROUTE53, "us-east-1", ["us-west-2"], {"us-east-1": 100, "us-west-2": 0})
    assert weights == {"us-east-1": 0, "us-west-2": 100}


def test_active_active_shares_the_failed_weight_by_capacity():
    before = CLOUDDNS.normal_weights()
    assert before == {"us-central1": 50, "europe-west4": 25, "asia-southeast1": 25}
    targets = failover_targets(CLOUDDNS, "us-central1", None)
    assert targets == ["europe-west4", "asia-southeast1"]
    assert failover_weights(CLOUDDNS, "us-central1", targets, before) == {
        "us-central1": 0, "europe-west4": 50, "asia-southeast1": 50
    }
    # Losing a small region: the big one takes twice the share of the other.
    targets = failover_targets(CLOUDDNS, "asia-southeast1", None)
    assert failover_weights(CLOUDDNS, "asia-southeast1", targets, before) == {
        "us-central1": 67, "europe-west4": 33, "asia-southeast1": 0
    }


def test_explicit_targets_are_checked():
    with pytest.raises(PlanError, match="'mars-1' is not a region"):
        failover_targets(ROUTE53, "us-east-1", ["mars-1"])
    with pytest.raises(PlanError, match="is the failed region"):
        failover_targets(ROUTE53, "us-east-1", ["us-east-1"])
    with pytest.raises(PlanError, match="failed region 'nowhere'"):
        failover_targets(ROUTE53, "nowhere", None)


def test_weights_never_leave_zero_targets():
    guarded = runbook("llm-inference-clouddns.yaml", spec__guardrails__min_healthy_targets=3)
    with pytest.raises(PlanError, match="requires at least 3"):
        failover_weights(guarded, "us-central1", ["europe-west4", "asia-southeast1"], guarded.normal_weights())


def test_failback_home_drops_standbys_and_keeps_serving_regions():
    assert failback_home(ROUTE53, "us-east-1", {"us-east-1": 0, "us-west-2": 100}) == {"us-east-1": 100, "us-west-2": 0}
    # Another region still down (0): home is the original plus what still serves.
    assert failback_home(CLOUDDNS, "us-central1", {"us-central1": 0, "europe-west4": 100, "asia-southeast1": 0}) == {
        "us-central1": 67, "europe-west4": 33, "asia-southeast1": 0
    }


def test_two_region_shift_gives_the_original_the_step():
    start, home = {"a": 0, "b": 100}, {"a": 100, "b": 0}
    assert [shift_weights(start, home, p) for p in (10, 25, 50, 75, 100)] == [
        {"a": 10, "b": 90}, {"a": 25, "b": 75}, {"a": 50, "b": 50}, {"a": 75, "b": 25}, {"a": 100, "b": 0}
    ]


weights = st.dictionaries(st.sampled_from(["r1", "r2", "r3", "r4"]), st.integers(0, 100), min_size=2, max_size=4)


def to_100(w: dict[str, int]) -> dict[str, int]:
    """Scale arbitrary non-negative weights to a state summing to 100."""
    total = sum(w.values()) or 1
    scaled = {k: v * 100 // total for k, v in w.items()}
    first = sorted(scaled)[0]
    scaled[first] += 100 - sum(scaled.values())
    return scaled


@given(weights, weights, st.integers(0, 100))
def test_every_shift_step_sums_to_100_and_stays_between_start_and_home(a, b, percent):
    start, home = to_100(a), to_100(b)
    step = shift_weights(start, home, percent)
    assert sum(step.values()) == 100
    for region, w in step.items():
        low, high = sorted((start.get(region, 0), home.get(region, 0)))
        assert low - 1 <= w <= high + 1
    assert shift_weights(start, home, 0) == {r: start.get(r, 0) for r in step}
    assert shift_weights(start, home, 100) == {r: home.get(r, 0) for r in step}


def test_approval_policies():
    assert approval_required(ApprovalPolicy.always, "cli")
    assert not approval_required(ApprovalPolicy.never, "alert")
    assert approval_required(ApprovalPolicy.when_auto_triggered, "alert")
    assert not approval_required(ApprovalPolicy.when_auto_triggered, "cli")
    # A drill starts unattended (a schedule fires it): a live one waits like an alert's run.
    assert approval_required(ApprovalPolicy.when_auto_triggered, "drill")

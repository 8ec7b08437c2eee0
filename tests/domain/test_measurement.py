"""How long a Prometheus check needs in real time (drpilot/domain/measurement.py)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from drpilot.domain.measurement import lookback_seconds, needed_seconds, rehearsed_length
from drpilot.domain.runbook import PromCheck


@pytest.mark.parametrize(
    ("query", "seconds"),
    [
        ('up{region="{region}"}', 0),
        ('sum(rate(x{code=~"5[0-9]{2}"}[1m])) / sum(rate(x[30s]))', 60),  # a label regex is no range
        ("max_over_time(rate(x[5m])[1h30m:1m])", 5400),  # a subquery's range, not its resolution
        ("rate(x[2m] offset 5m)", 420),
        ("histogram_quantile(0.99, sum by (le) (rate(h_bucket[500ms])))", 0.5),
        ("avg_over_time(x[1w])", 604800),
    ],
)
def test_lookback_is_the_longest_range_plus_offset(query, seconds):
    assert lookback_seconds(query) == seconds


def test_a_measurement_needs_its_lookback_and_one_scrape_and_nothing_without_checks():
    checks = [PromCheck(name="a", query="rate(x[1m])", max=1), PromCheck(name="b", query="up", min=1)]
    assert needed_seconds(checks, timedelta(seconds=30)) == 90
    assert needed_seconds([PromCheck(name="b", query="up", min=1)], timedelta(seconds=15)) == 15
    assert needed_seconds([], timedelta(seconds=30)) == 0


def test_a_rehearsal_gives_a_measurement_its_real_time_but_never_more_than_speed_1():
    assert rehearsed_length(120, 60, 90) == 90  # 2 s at speed 60: too short for the range
    assert rehearsed_length(120, 1, 90) == 120  # speed 1: as written
    assert rehearsed_length(30, 60, 90) == 30  # speed 1 would give only 30 s: so does the rehearsal
    assert rehearsed_length(600, 2, 90) == 300  # already long enough
    assert rehearsed_length(120, 60, 0) == 2  # nothing measured over time

"""PolledWait (activities/waits.py): what a polled rehearsal wait stands for at speed 1."""

from __future__ import annotations

import time

import pytest

from activities.waits import PolledWait, slept


def test_a_wait_is_projected_from_the_middle_of_its_last_poll_interval():
    wait = PolledWait("pods", speed=100, poll_seconds=2.0)
    time.sleep(0.2)
    wait.pending()
    time.sleep(0.1)
    (result,) = wait.done()
    # Ended between 0.2 s and 0.3 s here: 25 s at speed 100, plus the production poll's
    # average lag (1 s); give or take half that interval at speed 1's scale plus the lag.
    assert result.seconds == pytest.approx(0.3, abs=0.05)
    assert result.unscaled_seconds == pytest.approx(26.0, abs=3.0)
    assert result.uncertainty_seconds == pytest.approx(6.0, abs=2.0)


def test_nothing_to_project_at_speed_one_or_when_the_first_look_found_it_done():
    at_one = PolledWait("pods", speed=1, poll_seconds=2.0)
    at_one.pending()
    assert at_one.done() == []
    assert PolledWait("pods", speed=100, poll_seconds=2.0).done() == []


def test_sleeps_the_activity_scaled_itself_are_exact():
    (result,) = slept("health-interval", 50, 0.2, 10.0)
    assert (result.seconds, result.unscaled_seconds, result.uncertainty_seconds) == (0.2, 10.0, 0.0)
    assert slept("health-interval", 1, 10.0, 10.0) == []

"""An activity run outside a worker, in temporalio's ActivityEnvironment, as a worker would
run it: its heartbeats recorded, or resumed from the details of a previous attempt."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from temporalio.testing import ActivityEnvironment


def run(fn, arg, heartbeats: list[Any] | None = None, resume: dict[str, Any] | None = None):
    env = ActivityEnvironment()
    if heartbeats is not None:
        env.on_heartbeat = lambda *details: heartbeats.append(details[0])
    if resume is not None:
        env.info = dataclasses.replace(env.info, attempt=2, heartbeat_details=[resume])
    return env.run(fn, arg)


class Killed(Exception):
    """The worker running an activity died: raised from a heartbeat, so at a known point."""


def run_until_killed(fn, arg, when: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    """Run until the first heartbeat whose details satisfy `when`, and die there; return those
    details, which Temporal hands the retry (`run(fn, arg, resume=...)`)."""
    beats: list[dict[str, Any]] = []

    def beat(*details: Any) -> None:
        beats.append(details[-1])
        if when(details[-1]):
            raise Killed("worker killed")

    env = ActivityEnvironment()
    env.on_heartbeat = beat
    try:
        env.run(fn, arg)
    except Killed:
        return beats[-1]
    raise AssertionError("the activity finished before the point it was to be killed at")

"""An activity run outside a worker, in temporalio's ActivityEnvironment, as a worker would
run it: its heartbeats recorded, or resumed from the details of a previous attempt."""

from __future__ import annotations

import dataclasses
from typing import Any

from temporalio.testing import ActivityEnvironment


def run(fn, arg, heartbeats: list[Any] | None = None, resume: dict[str, Any] | None = None):
    env = ActivityEnvironment()
    if heartbeats is not None:
        env.on_heartbeat = lambda *details: heartbeats.append(details[0])
    if resume is not None:
        env.info = dataclasses.replace(env.info, attempt=2, heartbeat_details=[resume])
    return env.run(fn, arg)

"""The front-door services (starting and steering runs, admission, schedules, the worker)
against real Temporal servers and the simulated world."""

from tests.support.drills import alertmanager, s3  # noqa: F401  (fixtures of the drill schedules)

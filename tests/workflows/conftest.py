"""Workflow tests: a time-skipping Temporal test server per test (15-minute bakes take
milliseconds; `env`, `harness` in tests/conftest.py), a fresh task queue and worker per
test, activities replaced by name with the simulated world (tests/support/world.py)."""

from tests.support.drills import alertmanager, s3  # noqa: F401  (fixtures of the drill tests)

"""Fixtures every folder may use: the Temporal servers and harnesses (tests/support/temporal.py)
on the simulated world, the example runbooks, and the sandbox twin started for a test
(tests/support/twin.py). A folder's own fixtures live in its conftest.py."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from drpilot_twin.aws.moto_server import MotoServer
from drpilot_twin.faults import FaultBoard
from drpilot_twin.receiver import HttpReceiver
from drpilot_twin.twin import Twin
from temporalio.testing import WorkflowEnvironment

from drpilot.domain.runbook import Runbook
from tests.support.loopback import serving
from tests.support.paths import ROUTE53_RUNBOOK, RUNBOOKS
from tests.support.runbooks import runbook
from tests.support.temporal import harnesses_on, start_dev_env, start_env
from tests.support.twin import SandboxProcess, start_twin


@pytest.fixture(scope="session")
def runbook_paths() -> list[Path]:
    return sorted(RUNBOOKS.glob("*.yaml"))


@pytest.fixture
def route53_runbook() -> Runbook:
    return runbook("llm-inference.yaml")


@pytest.fixture
def clouddns_runbook() -> Runbook:
    return runbook("llm-inference-clouddns.yaml")


# ------------------------------------------------------------------ Temporal
@pytest.fixture
async def env() -> AsyncIterator[WorkflowEnvironment]:
    """A time-skipping test server per test. One per session was faster, but the server
    keeps time locked for good when an activity finishes after its workflow did (see
    sdk-java#2391), and one such test stalled every later test's timers; a fresh server
    costs a fraction of a second."""
    environment = await start_env()
    yield environment
    await environment.shutdown()


own_env = env  # tests that abort a run while an activity is held asked for their own server


@pytest.fixture
async def dev_env() -> AsyncIterator[WorkflowEnvironment]:
    """The real dev server (no time skipping), for runs that fail fast and whose cancelled
    branches trip the time-skipping server's ACTIVITY_UNKNOWN bug (sdk-java#2391)."""
    environment = await start_dev_env()
    yield environment
    await environment.shutdown()


@pytest.fixture
def harness(env: WorkflowEnvironment):
    return harnesses_on(env)


@pytest.fixture
def dev_harness(dev_env: WorkflowEnvironment):
    return harnesses_on(dev_env)


@pytest.fixture
def own_harness(own_env: WorkflowEnvironment):
    return harnesses_on(own_env)


# ------------------------------------------------------------------ the sandbox twin
@pytest.fixture
def receiver() -> Iterator[HttpReceiver]:
    """The twin's HTTP receiver alone (http blocks' endpoint): what it got, one effect per key."""
    server = HttpReceiver(FaultBoard())
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def moto() -> Iterator[MotoServer]:
    """moto's server over HTTP (one per test module; every moto server in a process shares
    its state, so a test that needs a clean account uses buckets of its own)."""
    with serving(MotoServer()) as server:
        yield server


@pytest.fixture
def twin_factory(tmp_path) -> Iterator[Callable[..., Twin]]:
    """start_twin(runbook, **options) for a private twin, stopped after the test."""
    twins: list[Twin] = []

    def make(runbook: Runbook | Path = ROUTE53_RUNBOOK, **options: Any) -> Twin:
        twin = start_twin(runbook, tmp_path / f"twin{len(twins)}", **options)
        twins.append(twin)
        return twin

    yield make
    for twin in twins:
        twin.stop()


@pytest.fixture
def sandbox_process(tmp_path) -> Iterator[Callable[..., SandboxProcess]]:
    """Factory: sandbox_process(runbook_path, *up_args, env=None) -> a ready SandboxProcess
    (its state dir under tmp_path); stopped after the test whatever happened."""
    started: list[SandboxProcess] = []

    def start(runbook: Path = ROUTE53_RUNBOOK, *args: str, env: dict[str, str] | None = None) -> SandboxProcess:
        sandbox = SandboxProcess(runbook, tmp_path / f"sandbox{len(started)}", *args, env=env)
        started.append(sandbox)
        return sandbox.start()

    yield start
    for sandbox in started:
        sandbox.kill()


# The test process holds Temporal clients and test servers; interpreter finalization can
# then abort (temporalio/sdk-python#300), turning a green run into exit -6 after the
# summary is printed. End the way the drpilot CLI does (drpilot/cli/process_exit.py), with
# pytest's own exit status, after every other plugin has finished.
_EXIT_STATUS = pytest.StashKey[int]()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    session.config.stash[_EXIT_STATUS] = int(exitstatus)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    if _EXIT_STATUS in config.stash:
        from drpilot.cli.process_exit import end_process

        end_process(config.stash[_EXIT_STATUS])

"""kill -9 the worker in the middle of a failover: a new worker finishes the run with the
right final state and no side effect done twice (Temporal's durability, and idempotent,
resumable activities), taking the killed worker's activity over once its short heartbeat
timeout passes (workflows/calls.py HEARTBEAT)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time

import pytest
from drpilot_twin.faults import Faults
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from temporalio.api.enums.v1 import EventType, PendingActivityState, TimeoutType

from activities import contracts as c
from drpilot.domain.settings import load_settings
from drpilot.frontdoor.runs import progress, result, start
from drpilot.frontdoor.temporal import connect
from tests.support.paths import ARC_RUNBOOK, DRPILOT, ROUTE53_RUNBOOK
from workflows.calls import HEARTBEAT
from workflows.types import FailoverInput

pytestmark = pytest.mark.e2e


def spawn_worker(env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen([str(DRPILOT), "worker"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)


async def wait_for_phase(handle, phase: str, running: str | None, timeout: float = 60) -> None:
    """Until the run is in `phase` and, if `running` is given, that activity has started."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if (await progress(handle)).phase == phase and (running is None or await _started(handle, running)):
                return
        except Exception:  # noqa: BLE001 - no worker has taken the run yet
            pass
        await asyncio.sleep(0.1)
    raise AssertionError(f"the run never reached {phase}")


async def _started(handle, activity_type: str) -> bool:
    pending = (await handle.describe()).raw_description.pending_activities
    return any(
        p.activity_type.name == activity_type and p.state == PendingActivityState.PENDING_ACTIVITY_STATE_STARTED
        for p in pending
    )


async def taken_over(handle, activity_type: str) -> list:
    """The (scheduled, started) events of `activity_type` in the run's history."""
    events = [e async for e in handle.fetch_history_events()]
    scheduled = {e.event_id: e for e in events if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED}
    return [
        (scheduled[e.activity_task_started_event_attributes.scheduled_event_id], e)
        for e in events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED
        and scheduled[e.activity_task_started_event_attributes.scheduled_event_id]
        .activity_task_scheduled_event_attributes.activity_type.name == activity_type
    ]


def failover_with_a_kill(twin, monkeypatch, phase: str, running: str | None = None):
    """A failover of the twin's runbook whose first worker is SIGKILLed once the run is in
    `phase` (and activity `running` has started); a second worker finishes it. Its result,
    the second worker's pid and, for `running`, its (scheduled, started) events."""
    env = {**os.environ, **twin.env()}
    for key, value in twin.env().items():
        monkeypatch.setenv(key, value)
    settings = load_settings(env)
    first = spawn_worker(env)
    second = None

    async def scenario():
        nonlocal second
        client = await connect(settings.temporal)
        started = await start(client, settings, FailoverInput(
            runbook=twin.runbook, failed_region="us-east-1", speed=settings.speed, reason="chaos"))
        handle = started.handle
        await wait_for_phase(handle, phase, running)
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
        second = spawn_worker(env)
        outcome = await asyncio.wait_for(result(handle), timeout=240)
        return outcome, second.pid, (await taken_over(handle, running) if running else [])

    try:
        return asyncio.run(scenario())
    finally:
        for worker in (first, second):
            if worker is not None and worker.poll() is None:
                os.killpg(worker.pid, signal.SIGTERM)
                worker.wait(timeout=60)


def test_sigkill_worker_during_a_routing_control_switch_makes_one_update(twin_factory, monkeypatch):
    # Route53's control plane is down and 3 of 5 ARC endpoints fail: the switch is ARC's data
    # plane only. The kill lands in the dns-switch phase (its TTL wait lasts 3 s at speed 20).
    twin = twin_factory(ARC_RUNBOOK, temporal=True,
                        faults=Faults(route53_control_plane_down=True, arc_endpoints_down=3))
    outcome, _, _ = failover_with_a_kill(twin, monkeypatch, "dns-switch")
    assert outcome.status == "completed", outcome.messages
    assert outcome.final_state.dns == {"us-east-1": 0, "us-west-2": 100}
    # One effective update, whichever worker made it: us-east-1 went Off once, no record changed.
    east = twin.runbook.spec.dns.routing_controls.controls["us-east-1"].arn
    assert twin.arc.log.transitions == [(east, "Off")]
    assert twin.aws.change_count == 0
    assert twin.routing_controls() == {"us-east-1": "Off", "us-west-2": "On"}


def test_sigkill_worker_mid_failover(twin_factory, monkeypatch):
    # Pods in the DR region take 200 simulated seconds (10 s at speed 20): the kill lands
    # while the scale-up waits for them.
    twin = twin_factory(ROUTE53_RUNBOOK, temporal=True, faults=Faults(pod_start_seconds={"us-west-2": 200}))
    outcome, second, scale = failover_with_a_kill(twin, monkeypatch, "prepare", running=c.KUBE_SCALE)
    assert outcome.status == "completed", outcome.messages
    # The killed worker's scale-up was retried by the second worker after its heartbeat timed
    # out (not its start-to-close): the short heartbeat timeout, not a minute.
    retried = [(sch, st) for sch, st in scale if st.activity_task_started_event_attributes.attempt > 1]
    assert len(retried) == 1, [st.activity_task_started_event_attributes.attempt for _, st in scale]
    scheduled, started = retried[0]
    assert scheduled.activity_task_scheduled_event_attributes.heartbeat_timeout.ToTimedelta() == HEARTBEAT
    assert started.activity_task_started_event_attributes.attempt == 2
    assert started.activity_task_started_event_attributes.identity.startswith(f"{second}@")
    failure = started.activity_task_started_event_attributes.last_failure
    assert failure.timeout_failure_info.timeout_type == TimeoutType.TIMEOUT_TYPE_HEARTBEAT, failure
    assert outcome.final_state.dns == {"us-east-1": 0, "us-west-2": 100}
    assert twin.weights() == {"us-east-1": 0, "us-west-2": 100}
    # One DNS change in all, though two workers ran the procedure.
    assert twin.aws.change_count == 1
    # The DR deployments were scaled once: generation 1 at seed, 2 after the one scale-up.
    apps = k8s.AppsV1Api(k8s_config.new_client_from_config(config_file=str(twin.kubeconfig), context="prod-usw2"))
    for name, replicas in (("inference-service", 6), ("inference-gateway", 3)):
        deployment = apps.read_namespaced_deployment(name, "ml-serving")
        assert deployment.spec.replicas == replicas
        assert deployment.status.ready_replicas == replicas
        assert deployment.metadata.generation == 2, name

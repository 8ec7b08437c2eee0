"""DrillWorkflow (workflows/drill.py) on the time-skipping server: the real failover and
failback as its children on the simulated world, the real admission (claimed through the
drill's own activity), the blocking alerts read from a real Alertmanager (Debian
prometheus-alertmanager) and the evidence pack written to moto's S3 over HTTP."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import httpx
import pytest
from drpilot_twin.processes import (
    Prometheus,
    alertmanager_binary,
    prometheus_binary,
)
from temporalio.client import WorkflowHandle
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities import contracts as c
from activities.drills import DrillActivities
from drpilot import __version__
from drpilot.domain.runbook import Runbook
from drpilot.domain.settings import ProviderSettings, Settings
from drpilot.frontdoor import runs
from drpilot.frontdoor.drills import drill_progress, drill_result
from drpilot.frontdoor.ports import free_loopback_port
from tests.support.drills import Drills, drill_runbook, fire, resolve
from tests.support.runbooks import runbook
from tests.support.temporal import keep_history, only_held_activity_pending
from tests.support.world import World
from workflows.types import DrillResult, FailoverInput

pytestmark = pytest.mark.skipif(alertmanager_binary() is None, reason="prometheus-alertmanager not installed")

def phase_names(result: DrillResult) -> list[str]:
    return [p.name for p in result.phases]


async def test_rehearsal_drill_fails_over_soaks_fails_back_and_keeps_evidence(env, alertmanager, s3):
    # approvals.failover always, and a block's approval: a rehearsal against the sandbox still waits for nobody.
    confirm = {"name": "dba-confirms", "kind": "approval", "at": "before_switch", "message": "writes healthy?"}
    rb = drill_runbook(alertmanager, spec__approvals__failover="always", spec__blocks=[confirm])
    world = World.normal(rb)
    world.cold_start = (2.0, 40.0, 41.0, 60.0, 63.0, 80.0)
    d = Drills(env.client, world, s3)
    async with d.worker():
        handle = await d.start(rb)
        result = await drill_result(handle)
        state = await d.admission()
        await keep_history(handle, "drill_completed")
    assert result.status == "completed", result.reason
    assert phase_names(result) == ["admission", "preflight", "failover", "soak", "failback", "evidence"]
    assert all(p.outcome == "ok" for p in result.phases), result.phases
    # Over to the standby and back home, through the real procedures.
    assert world.changes[0] == {"us-east-1": 0, "us-west-2": 100}
    assert world.dns == rb.normal_weights()
    assert world.replicas["us-west-2"] == {f"{w.namespace}/{w.deployment}": w.replicas.standby for w in rb.workloads_in("us-west-2")}
    assert result.failover is not None and result.failover.status == "completed"
    assert result.failover.run_id == f"{handle.id}/failover"
    assert result.failback is not None and result.failback.status == "completed"
    assert result.rto_seconds is not None and result.rto_met is True
    assert "soak" in [p.name for p in result.phases] and "10 check(s) passed" in result.phases[3].detail
    assert any("dns-switch" in ch for ch in result.changes)
    # The blocks' steps are in the evidence with the rest of the changes (twice: failover, failback).
    assert [ch.split(":")[0] for ch in result.changes if "block:" in ch] == ["failover block", "failback block"]
    # Every health check the soak made really ran: 10 of them on the standby.
    soak_checks = [d for name, d in world.calls if name == c.PROBES_HEALTH and d == "us-west-2"]
    assert len(soak_checks) >= 10
    # The evidence pack is the result, readable after Temporal forgets the run.
    kept = d.evidence(result)
    assert kept.drill_id == handle.id and kept.status == "completed"
    assert [p.name for p in kept.phases][:5] == phase_names(result)[:5]
    assert kept.failover is not None and kept.failover.phases  # the gates, with their evidence
    # Which runbook, exactly, and which drpilot: what an auditor asks of a pack.
    assert kept.runbook_digest == rb.digest() and kept.runbook_digest.startswith("sha256:") and kept.drpilot_version == __version__
    assert runbook("llm-inference.yaml").digest() != rb.digest()  # another runbook's content, another digest
    # Readiness's spec.drills.cadence reads the pack back: this drill is the last completed one.
    last = ActivityEnvironment().run(DrillActivities(s3, d.settings).last_completed, c.LastDrillInput(runbook=rb))
    assert (last.drill_id, last.completed_at) == (handle.id, kept.ended_at) and last.uri.startswith("s3://")
    # ... and the cold start its failover measured, for readiness and `runbook plan`.
    assert last.cold_start is not None and last.cold_start.drill_id == handle.id
    assert last.cold_start.cold_starts == kept.failover.cold_starts and kept.failover.cold_starts[0].warmed == 80.0
    # The drill held the runbook, and released it as it ended.
    assert state.holders == []
    assert state.last_ended["llm-inference"].run_id == handle.id


async def test_a_blocking_alert_keeps_the_drill_from_starting(env, alertmanager, s3):
    rb = drill_runbook(alertmanager)
    world = World.normal(rb)
    d = Drills(env.client, world, s3)
    fire(alertmanager, "ModelRegistryUnavailable")
    try:
        async with d.worker():
            result = await drill_result(await d.start(rb))
            state = await d.admission()
    finally:
        resolve(alertmanager, "ModelRegistryUnavailable")
    assert result.status == "blocked"
    assert result.firing_alerts == ["ModelRegistryUnavailable"]
    assert "ModelRegistryUnavailable" in result.reason
    assert phase_names(result) == ["admission", "preflight", "evidence"]
    assert world.changes == [] and world.scale_calls == []
    assert result.failover is None
    assert d.evidence(result).status == "blocked"  # a skipped drill is on record too
    assert state.holders == []
    # Nothing changed, so no cooldown starts: an alert may still start a real failover.
    assert "llm-inference" not in state.last_ended


async def blocked(env, s3, rb: Runbook, *, sandbox: bool = True) -> DrillResult:
    """Run a drill that must end blocked, with nothing in the world changed."""
    world = World.normal(rb)
    d = Drills(env.client, world, s3, sandbox=sandbox)
    async with d.worker():
        result = await drill_result(await d.start(rb))
    assert result.status == "blocked", result.reason
    assert world.changes == [] and world.scale_calls == []
    return result


async def test_a_rehearsal_is_refused_on_a_worker_not_pointed_at_a_sandbox(env, alertmanager, s3):
    result = await blocked(env, s3, drill_runbook(alertmanager), sandbox=False)
    assert "DRPILOT_SANDBOX" in result.reason


async def test_the_drill_holds_the_runbook_while_its_children_run(env, alertmanager, s3):
    """A failover asked for while the drill's failover runs is refused, naming the drill."""
    rb = drill_runbook(alertmanager)
    world = World.normal(rb, hold=(c.DNS_APPLY, 1))
    d = Drills(env.client, world, s3)
    async with d.worker():
        handle = await d.held(rb)
        with pytest.raises(runs.RunRefused) as refused:
            await runs.start(env.client, d.settings, FailoverInput(runbook=rb, failed_region="us-east-1"))
        world.release.set()
        result = await drill_result(handle)
    assert handle.id in str(refused.value)
    assert "abort" in str(refused.value)
    assert result.status == "completed", result.reason


def held_in_the_soak(world: World) -> None:
    # Health checks on the standby: the failover's gate, its post-switch validation, then the
    # soak's first check, held.
    world.hold = (c.PROBES_HEALTH, 3)


async def soaking(d: Drills, rb: Runbook) -> tuple[WorkflowHandle, asyncio.Future]:
    """Start the drill and wait until its soak's first check is held; the result to come."""
    handle = await d.start(rb)
    # Awaiting the result is what lets the time-skipping server skip the timers meanwhile.
    ending = asyncio.ensure_future(drill_result(handle))
    await asyncio.wait_for(d.world.entered.wait(), 30)
    return handle, ending


async def test_outcome_condition_during_the_soak_stops_it_and_restores(env, alertmanager, s3):
    rb = drill_runbook(alertmanager)
    world = World.normal(rb)
    held_in_the_soak(world)  # while the standby goes bad
    d = Drills(env.client, world, s3)
    async with d.worker():
        handle, ending = await soaking(d, rb)
        progress = await drill_progress(handle)
        assert progress.phases[-1].name == "soak" and progress.ended_at is None and progress.status == "running"
        world.unhealthy.add("us-west-2")
        world.release.set()
        result = await ending
    assert result.status == "failed"
    assert "outcome condition" in result.reason
    soak = next(p for p in result.phases if p.name == "soak")
    assert soak.outcome == "failed"
    # Restored: the failback brought traffic home although the standby went bad.
    assert phase_names(result)[-2:] == ["failback", "evidence"]
    assert world.dns == rb.normal_weights()
    assert d.evidence(result).status == "failed"


async def test_abort_during_the_soak_fails_back(env, alertmanager, s3):
    rb = drill_runbook(alertmanager)
    world = World.normal(rb)
    held_in_the_soak(world)
    d = Drills(env.client, world, s3)
    async with d.worker():
        handle, ending = await soaking(d, rb)
        answer = await runs.control(env.client, handle.id, "abort")
        world.release.set()
        result = await ending
        await keep_history(handle, "drill_aborted_in_soak")
    assert "aborting" in answer.message
    assert result.status == "aborted"
    assert world.dns == rb.normal_weights()
    assert result.failback is not None and result.failback.status == "completed"


async def test_a_failed_failover_is_cleaned_up_to_standby(env, alertmanager, s3):
    """The standby fails its gate: DNS never moves, and the replicas the failover added to the
    standby (compensation never scales down) go back to standby."""
    rb = drill_runbook(alertmanager)
    world = World.normal(rb)
    world.unhealthy.add("us-west-2")
    d = Drills(env.client, world, s3)
    async with d.worker():
        handle = await d.start(rb)
        result = await drill_result(handle)
        await keep_history(handle, "drill_failover_failed")
    assert result.status == "failed"
    assert "failover failed" in result.reason
    assert phase_names(result) == ["admission", "preflight", "failover", "cleanup", "evidence"]
    assert world.changes == []
    assert world.scale_calls[-1] == ("us-west-2", "standby")
    assert world.replicas["us-west-2"] == {f"{w.namespace}/{w.deployment}": w.replicas.standby for w in rb.workloads_in("us-west-2")}


async def test_an_alertmanager_that_cannot_be_read_blocks_the_drill(env, alertmanager, s3):
    """Not knowing whether a blocking alert fires is not "none fires"."""
    result = await blocked(env, s3, drill_runbook(alertmanager, spec__drills__alertmanager="http://127.0.0.1:9"))
    assert "cannot tell whether a blocking alert fires" in result.reason


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory) -> Iterator[Prometheus]:
    """A real Prometheus (Debian) scraping itself as region us-west-2 (up 1) and a closed
    port as us-east-1 (up 0), once a second."""
    if prometheus_binary() is None:
        pytest.skip("prometheus not installed")
    prom = Prometheus(tmp_path_factory.mktemp("prom"), {})
    prom.targets = {"us-west-2": prom.url, "us-east-1": f"http://127.0.0.1:{free_loopback_port()}"}
    prom.start()
    try:
        for _ in range(300):  # both targets scraped once
            got = httpx.get(f"{prom.url}/api/v1/query", params={"query": 'count(up{job="inference"})'}).json()
            if got["data"]["result"] and got["data"]["result"][0]["value"][1] == "2":
                break
            time.sleep(0.1)
        yield prom
    finally:
        prom.stop()


DOWN = 'up{job="inference"} == 0'


async def test_a_blocking_query_that_returns_a_series_blocks_the_drill(env, alertmanager, s3, prometheus):
    rb = drill_runbook(alertmanager, spec__guardrails__blocking_queries=[DOWN], spec__drills__prometheus=prometheus.url)
    result = await blocked(env, s3, rb)
    assert f"query {DOWN} (1 series)" in result.reason, result.reason


def test_blocking_queries_are_evaluated_by_prometheus_and_a_bad_one_is_a_clear_error(alertmanager, prometheus):
    def firing(*queries: str, url: str = "http://prometheus.monitoring:9090", **settings) -> c.FiringAlerts:
        rb = drill_runbook(
            alertmanager, spec__guardrails__blocking_alerts=[], spec__guardrails__blocking_queries=list(queries),
            spec__drills__prometheus=url,
        )
        # The runbook names production's Prometheus; the worker's map dials the real one (as the sandbox does).
        providers = ProviderSettings(prometheus_map={"http://prometheus.monitoring:9090": prometheus.url}, **settings)
        return DrillActivities(None, Settings(providers=providers)).firing_alerts(c.FiringAlertsInput(runbook=rb))

    got = firing(DOWN, 'up{job="inference", region="us-west-2"} == 0')
    assert got.firing == [f"query {DOWN} (1 series)"] and got.source == "http://prometheus.monitoring:9090"
    assert firing('up{region="us-west-2"} == 0').firing == []
    with pytest.raises(ApplicationError) as refused:
        firing("up{")
    assert refused.value.non_retryable and "'up{': Prometheus refused it" in str(refused.value)
    with pytest.raises(ApplicationError) as scalar:
        firing("time()")
    assert scalar.value.non_retryable and "returns a scalar, not series" in str(scalar.value)
    with pytest.raises(ApplicationError) as unreachable:  # retried, and in the end: blocked
        firing(DOWN, url="http://127.0.0.1:9")
    assert not unreachable.value.non_retryable and "cannot query http://127.0.0.1:9/api/v1/query" in str(unreachable.value)


async def test_a_live_drill_waits_for_the_runbooks_approval_and_records_who_gave_it(env, alertmanager, s3):
    """approvals.failover when-auto-triggered: a drill is not a person at a terminal, so its
    failover waits for `drpilot approve DRILL_ID/failover`; the evidence names the approver."""
    rb = drill_runbook(alertmanager, spec__approvals__failover="when-auto-triggered")
    world = World.normal(rb)
    d = Drills(env.client, world, s3)
    async with d.worker():
        handle = await d.start(rb, mode="live")
        # Not awaiting the result yet: the time-skipping server would skip the approval timeout.
        child = env.client.get_workflow_handle(f"{handle.id}/failover")
        async with asyncio.timeout(30):
            while True:
                try:
                    if (await runs.progress(child)).waiting_for == "approval":
                        break
                except runs.RunError:
                    pass  # not started yet
                await asyncio.sleep(0.05)
        assert world.changes == []
        await runs.control(env.client, child.id, "approve")
        result = await drill_result(handle)
    assert result.status == "completed", result.reason
    assert len(result.approvals) == 1 and result.approvals[0].startswith("failover approved by ")
    assert d.evidence(result).approvals == result.approvals


async def test_abort_during_the_failover_compensates_and_cleans_up(env, alertmanager, s3):
    """Aborted while the failover's DNS change is in flight: the change completes (never cut
    half-way) and the aborted failover leaves DNS on the standby it passed the gate of, as an
    aborted failover does; the drill then fails back, and the standby is back at standby."""
    rb = drill_runbook(alertmanager)
    world = World.normal(rb, hold=(c.DNS_APPLY, 1))
    d = Drills(env.client, world, s3)
    async with d.worker():
        handle = await d.held(rb)
        await only_held_activity_pending(env.client.get_workflow_handle(f"{handle.id}/failover"), world)
        answer = await runs.control(env.client, handle.id, "abort")
        world.release.set()
        result = await drill_result(handle)
    assert "aborting" in answer.message
    assert result.status == "aborted"
    assert result.failover is not None and result.failover.status == "aborted"
    assert world.dns == rb.normal_weights()
    assert phase_names(result)[-2:] == ["failback", "evidence"]
    assert result.failback is not None and result.failback.status == "completed"
    assert world.replicas["us-west-2"] == {f"{w.namespace}/{w.deployment}": w.replicas.standby for w in rb.workloads_in("us-west-2")}

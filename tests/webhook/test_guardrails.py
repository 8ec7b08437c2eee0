"""Each guardrail between an alert and a run, through the webhook, with a real Temporal
server and worker running the real workflows (admission, failover) on the simulated world."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from drpilot.domain.settings import TemporalSettings
from drpilot.webhook.app import PATH
from tests.support.runbooks import runbook
from tests.support.webhook import AUTH, Clock, alert, notification, routing, rule
from tests.support.world import World
from workflows import admission
from workflows.types import AdmissionState, ApproveInput, Progress, ReleaseInput, RunResult


def waiting_runbook(**changes):
    """llm-inference whose alert-started failovers wait for approval (its own policy)."""
    return runbook("llm-inference.yaml", **changes)


async def run_result(served, run_id: str) -> RunResult:
    # Pinned to its run: the time-skipping server's history poll for an id alone finds no
    # completion event.
    client = served.harness.client
    run = (await client.get_workflow_handle(run_id).describe()).run_id
    # A handle the test server's client did not start skips no time by itself.
    async with served.env.time_skipping_unlocked():
        return await client.get_workflow_handle(run_id, run_id=run, result_type=RunResult).result()


async def approve(served, run_id: str) -> None:
    handle = served.harness.client.get_workflow_handle(run_id)
    async with asyncio.timeout(20):
        while (await handle.query("progress", result_type=Progress)).waiting_for != "approval":
            await asyncio.sleep(0.02)
    await handle.execute_update("approve", ApproveInput(by="oncall"))


async def test_an_alert_starts_one_failover_that_waits_for_approval_and_completes(serve):
    rb = waiting_runbook()
    async with serve(World.normal(rb), routing((rule(), rb))) as served:
        [decision] = await served.decisions(alert("us-east-1"))
        assert decision["decision"] == "started failover:llm-inference"
        assert (decision["rule"], decision["runbook"], decision["region"]) == ("llm-inference-region-down", "llm-inference", "us-east-1")
        # when-auto-triggered: an alert's run waits for a person.
        await approve(served, decision["run_id"])
        result = await run_result(served, decision["run_id"])
        assert result.status == "completed"
        assert served.world.dns == {"us-east-1": 0, "us-west-2": 100}
        assert served.metric("drpilot_webhook_runs_started_total", runbook="llm-inference") == 1


async def test_resolved_alerts_never_start_a_run_and_are_recorded(serve):
    rb = waiting_runbook()
    async with serve(World.normal(rb), routing((rule(), rb))) as served:
        [decision] = await served.decisions(alert("us-east-1", status="resolved"))
        assert decision["outcome"] == "resolved"
        assert decision["run_id"] is None
        assert decision["decision"].startswith("resolved: recorded (ended 2026-01-01 00:10:00Z); no run of llm-inference")
        assert served.world.calls == []  # nothing ran
        assert served.metric("drpilot_webhook_alerts_resolved_total", runbook="llm-inference") == 1


async def test_a_resolved_alert_is_recorded_in_the_run_it_belongs_to(serve):
    rb = waiting_runbook()
    async with serve(World.normal(rb), routing((rule(), rb))) as served:
        [started] = await served.decisions(alert("us-east-1"))
        assert started["outcome"] == "started"
        [resolved] = await served.decisions(alert("us-east-1", status="resolved"))
        assert resolved["run_id"] == "failover:llm-inference"
        assert resolved["decision"].startswith("resolved: recorded in failover:llm-inference (ended 2026-01-01 00:10:00Z)")
        handle = served.harness.client.get_workflow_handle("failover:llm-inference")
        progress = await handle.query("progress", result_type=Progress)
        assert any(m.startswith("alert RegionDown resolved at 00:10:00Z (a1b2c3") for m in progress.messages)
        assert progress.state == "running"  # a resolution stops nothing
        await approve(served, "failover:llm-inference")
        assert (await run_result(served, "failover:llm-inference")).status == "completed"


async def test_an_alert_no_rule_matches_is_unmatched(serve):
    rb = waiting_runbook()
    async with serve(World.normal(rb), routing((rule(), rb))) as served:
        [other, wrong_runbook] = await served.decisions(
            alert(alertname="DiskFull"), alert(runbook_name="someone-else")
        )
        assert other["decision"] == "unmatched: no rule matches alert DiskFull"
        assert wrong_runbook["outcome"] == "unmatched"
        assert served.world.calls == []
        assert served.metric("drpilot_webhook_alerts_refused_total", outcome="unmatched", reason="unmatched") == 2


async def test_an_alert_naming_a_region_the_runbook_lacks_is_refused(serve):
    rb = waiting_runbook()
    async with serve(World.normal(rb), routing((rule(), rb))) as served:
        unknown, missing = await served.decisions(alert("eu-north-9"), alert("us-east-1") | {"labels": {"alertname": "RegionDown", "drpilot_runbook": "llm-inference"}})
        assert unknown["decision"] == (
            "refused: label region='eu-north-9' names no region of runbook llm-inference (it has us-east-1, us-west-2)"
        )
        assert missing["decision"] == (
            "refused: the alert has no label region, which rule llm-inference-region-down reads the failed region "
            "from (runbook llm-inference has us-east-1, us-west-2)"
        )
        assert served.world.calls == []


async def test_an_alert_firing_shorter_than_the_rules_for_is_held_then_starts(serve):
    rb = waiting_runbook()
    clock = Clock()
    async with serve(World.normal(rb), routing((rule(**{"for": "2m"}), rb)), clock=clock) as served:
        starts = clock.now - timedelta(seconds=30)
        [held] = await served.decisions(alert("us-east-1", starts=starts))
        assert held["decision"] == (
            "held: firing for 30s, rule llm-inference-region-down needs 2m before it starts a run; "
            "the next notification decides again"
        )
        assert served.world.calls == []
        clock.advance(timedelta(minutes=2))  # Alertmanager's next notification of the same alert
        [started] = await served.decisions(alert("us-east-1", starts=starts))
        assert started["outcome"] == "started"


async def test_auto_failover_false_is_notify_only(serve):
    rb = waiting_runbook(spec__guardrails__auto_failover=False)
    async with serve(World.normal(rb), routing((rule(), rb))) as served:
        [decision] = await served.decisions(alert("us-east-1"))
        assert decision["decision"].startswith("notify-only: runbook llm-inference sets guardrails.auto_failover: false")
        assert served.world.calls == []


async def test_the_kill_switch_by_env_or_file_makes_every_alert_notify_only(serve, tmp_path):
    rb = waiting_runbook()
    kill = tmp_path / "kill"
    async with serve(World.normal(rb), routing((rule(), rb)), environ={"DRPILOT_WEBHOOK_KILL_SWITCH": "1"}) as served:
        [decision] = await served.decisions(alert("us-east-1"))
        assert decision["decision"].startswith("notify-only: kill switch engaged (DRPILOT_WEBHOOK_KILL_SWITCH=1)")
    async with serve(World.normal(rb), routing((rule(), rb)), kill_file=kill) as served:
        kill.touch()
        [decision] = await served.decisions(alert("us-east-1"))
        assert decision["decision"] == f"notify-only: kill switch engaged (file {kill} exists); remove it to let alerts start runs"
        assert served.world.calls == []
        kill.unlink()  # read at every alert: no restart needed
        [decision] = await served.decisions(alert("us-east-1"))
        assert decision["outcome"] == "started"


async def admission_state(served) -> AdmissionState:
    handle = served.harness.client.get_workflow_handle(admission.workflow_id(served.harness.task_queue))
    return await handle.query("state", result_type=AdmissionState)


async def test_no_alert_starts_the_runbook_again_within_its_cooldown(serve):
    rb = waiting_runbook(spec__guardrails__cooldown="30m")
    clock = Clock()
    async with serve(World.normal(rb), routing((rule(), rb)), clock=clock) as served:
        [first] = await served.decisions(alert("us-east-1"))
        # It ends, and tells admission as a run does as it ends (workflows/admission.py
        # release_claim); awaiting a real end would let the test server skip its time to the
        # admission workflow's default timeout (10 years), which starts admission afresh.
        client = served.harness.client
        await client.get_workflow_handle(first["run_id"]).terminate("the test ends it")
        admission_handle = client.get_workflow_handle(admission.workflow_id(served.harness.task_queue))
        ended = datetime.now(UTC)
        await admission_handle.signal(admission.RELEASE, ReleaseInput(run_id=first["run_id"], status="completed", ended_at=ended))
        async with asyncio.timeout(20):  # the webhook saw it end: it asks admission again
            while served.webhook._guardrails.active.run_ids():
                await asyncio.sleep(0.02)
        clock.now = ended + timedelta(minutes=29)
        [cooling] = await served.decisions(alert("us-east-1", fingerprint="again"))
        assert cooling["outcome"] == "notify-only"
        assert cooling["reason"].startswith("cooldown: failover:llm-inference ended (completed) at ")
        assert f"until {(ended + timedelta(minutes=30)).astimezone(UTC):%H:%M:%S}Z" in cooling["reason"]
        clock.now = ended + timedelta(minutes=31)
        [again] = await served.decisions(alert("us-east-1", fingerprint="again"))
        assert again["outcome"] == "started"


async def test_the_circuit_breaker_opens_after_n_auto_starts_an_hour_and_closes_by_itself(serve):
    east = waiting_runbook()
    gcp = runbook("llm-inference-clouddns.yaml")
    clock = Clock()
    routes = routing((rule(), east), (rule("llm-inference-gcp"), gcp), max_runs=1, window="1h")
    async with serve(World.normal(east), routes, clock=clock) as served:
        [first] = await served.decisions(alert("us-east-1"))
        assert first["outcome"] == "started"
        [second] = await served.decisions(alert("us-central1", runbook_name="llm-inference-gcp"))
        assert second["outcome"] == "notify-only"
        assert second["reason"].startswith("circuit breaker open: 1 run(s) auto-started in the last 1h (at most 1)")
        # A duplicate of the running one still attaches: the breaker counts starts only.
        [dup] = await served.decisions(alert("us-east-1", fingerprint="dup"))
        assert dup["decision"] == "attached failover:llm-inference"
        clock.advance(timedelta(minutes=61))
        [later] = await served.decisions(alert("us-central1", runbook_name="llm-inference-gcp"))
        assert later["decision"] == "started failover:llm-inference-gcp"
        assert served.metric("drpilot_webhook_alerts_refused_total", outcome="notify-only", reason="circuit_breaker") == 1


async def test_never_auto_fail_over_the_only_region_still_serving(serve):
    rb = waiting_runbook()
    world = World.normal(rb)
    world.dns = {"us-east-1": 0, "us-west-2": 100}  # an earlier failover moved everything here
    async with serve(world, routing((rule(), rb))) as served:
        [decision] = await served.decisions(alert("us-west-2"))
        assert decision["outcome"] == "refused"
        assert decision["reason"].startswith(
            "us-west-2 is the only region serving llm-inference (live DNS us-west-2 100%, normally 0%)"
        )
        assert [name for name, _ in served.world.calls] == []
        # The primary serving alone is the runbook's normal layout: that one may fail over.
        served.world.dns = rb.normal_weights()
        [primary] = await served.decisions(alert("us-east-1"))
        assert primary["outcome"] == "started"


async def test_live_dns_that_cannot_be_read_starts_nothing(serve):
    rb = waiting_runbook()

    async def unreadable(_rb):
        raise RuntimeError("Route53 throttled: Rate exceeded")

    async with serve(World.normal(rb), routing((rule(), rb)), dns=unreadable) as served:
        [decision] = await served.decisions(alert("us-east-1"))
        assert decision["decision"] == (
            "refused: cannot read live DNS of llm-inference to check that other regions can serve "
            "(Route53 throttled: Rate exceeded); not starting"
        )


async def test_rule_mode_approval_waits_for_approval_even_when_the_runbook_never_asks(serve):
    rb = waiting_runbook(spec__approvals__failover="never")
    async with serve(World.normal(rb), routing((rule(mode="approval"), rb))) as served:
        [decision] = await served.decisions(alert("us-east-1"))
        await approve(served, decision["run_id"])  # times out unless the run waits for it
        assert (await run_result(served, decision["run_id"])).status == "completed"


async def test_an_alert_for_another_region_while_a_run_holds_the_runbook_is_refused(serve):
    gcp = runbook("llm-inference-clouddns.yaml")  # active-active: any region may fail
    async with serve(World.normal(gcp), routing((rule("llm-inference-gcp"), gcp))) as served:
        first, second = await served.decisions(
            alert("us-central1", runbook_name="llm-inference-gcp"), alert("europe-west4", runbook_name="llm-inference-gcp", fingerprint="b")
        )
        assert first["outcome"] == "started"
        assert second["outcome"] == "refused"
        assert "failover:llm-inference-gcp is already running with a different request" in second["reason"]


async def test_a_storm_of_1000_duplicate_alerts_starts_exactly_one_run(serve):
    """1,000 deliveries at once (Alertmanager's repeats, several replicas of a rule) and one
    notification of 1,000 alerts: one run, every other alert attached to it, and the
    breaker counted one start."""
    rb = waiting_runbook()
    async with serve(World.normal(rb), routing((rule(), rb), max_runs=2)) as served:
        responses = await asyncio.gather(*[
            served.http.post(PATH, json=notification(alert("us-east-1", fingerprint=f"f{i}")), headers=AUTH)
            for i in range(1000)
        ])
        assert all(r.status_code == 200 for r in responses)
        decisions = [r.json()["alerts"][0] for r in responses]
        decisions += await served.decisions(*[alert("us-east-1", fingerprint=f"g{i}") for i in range(1000)])
        assert sum(d["outcome"] == "started" for d in decisions) == 1
        assert sum(d["outcome"] == "attached" for d in decisions) == 1999
        assert {d["run_id"] for d in decisions} == {"failover:llm-inference"}
        assert served.metric("drpilot_webhook_runs_attached_total", runbook="llm-inference") == 1999
        assert len((await admission_state(served)).auto_starts) == 1
        await approve(served, "failover:llm-inference")
        assert (await run_result(served, "failover:llm-inference")).status == "completed"
        assert len(served.world.changes) == 1  # one failover moved DNS once


async def test_no_worker_answering_is_503_so_alertmanager_retries(serve, monkeypatch):
    from drpilot.frontdoor import runs

    rb = waiting_runbook()
    monkeypatch.setattr(runs, "ADMISSION_TIMEOUT", 1.0)
    async with serve(World.normal(rb), routing((rule(), rb))) as served:
        served.webhook.settings = replace(served.webhook.settings, temporal=TemporalSettings(task_queue="nobody-polls-this"))
        response = await served.post(alert("us-east-1"))
        assert response.status_code == 503
        assert "no drpilot worker answered on task queue nobody-polls-this" in response.json()["error"]


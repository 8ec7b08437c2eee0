"""The console's JSON API against real runs: a failover started from the console waits for
approval, the person who started it cannot approve it, another person can; who may do what
is the policy's; a state-changing call needs the action header and an identity; the board
feed shows a run waiting for approval as it happens."""

from __future__ import annotations

from tests.support.console import next_event
from tests.support.runbooks import runbook
from tests.support.runs import wait_for
from tests.support.world import World, outage
from workflows.failover import FailoverWorkflow
from workflows.types import DrillInput, FailoverInput, RunResult

RUN = "failover:llm-inference"


def waiting_runbook():
    return runbook("llm-inference.yaml", spec__approvals__failover="always")


async def test_a_console_failover_needs_another_persons_approval(serve_console):
    rb = waiting_runbook()
    world = outage(rb, "us-east-1")
    async with serve_console(world, rb) as served:
        # Starting asks for the runbook's name typed back.
        typo = await served.act("alice@example.com", "/api/runbooks/llm-inference/failover", {"from": "us-east-1", "confirm": "llm"})
        assert typo.status_code == 400 and typo.json() == {"error": 'type the runbook\'s name to confirm: send "confirm": "llm-inference"'}
        started = await served.act(
            "alice@example.com", "/api/runbooks/llm-inference/failover", {"from": "us-east-1", "confirm": "llm-inference"}
        )
        assert started.status_code == 200, started.text
        assert started.json() == {"run_id": RUN, "attached": False}
        handle = served.harness.client.get_workflow_handle(RUN, result_type=RunResult)
        await wait_for(handle, lambda p: p.waiting_for == "approval")

        run = (await served.http.get(f"/api/runs/{RUN}", headers=served.as_("carol@example.com"))).json()
        assert run["waiting_for"] == "approval" and run["requested_by"] == "alice@example.com"
        assert run["starter_may_approve"] is False

        mine = await served.act("alice@example.com", f"/api/runs/{RUN}/approve")
        assert mine.status_code == 409
        assert mine.json()["error"] == (
            f"run {RUN} refused approve: four eyes: alice@example.com started this run, so another person must approve it "
            "(approvals.distinct_approver)"
        )
        viewer = await served.act("carol@example.com", f"/api/runs/{RUN}/approve")
        assert viewer.status_code == 403
        assert viewer.json()["error"] == (
            "carol@example.com may not approve llm-inference: in policy.yaml, grants[1] gives view, not approve"
        )
        approved = await served.act("bob@example.com", f"/api/runs/{RUN}/approve")  # in group:oncall
        assert approved.status_code == 200, approved.text
        assert approved.json()["message"] == "approved by bob@example.com"
        result = await served.result(RUN)
    assert result.status == "completed"
    assert (result.requested_by, result.approved_by) == ("alice@example.com", "bob@example.com")
    assert world.dns == {"us-east-1": 0, "us-west-2": 100}


async def test_an_action_needs_the_header_an_identity_and_a_grant(serve_console):
    rb = waiting_runbook()
    world = outage(rb, "us-east-1")
    async with serve_console(world, rb) as served:
        path, body = "/api/runbooks/llm-inference/failover", {"from": "us-east-1", "confirm": "llm-inference"}
        no_header = await served.http.post(path, json=body, headers=served.as_("alice@example.com"))
        assert no_header.status_code == 403
        assert no_header.json() == {"error": "a state-changing call must carry the header X-Drpilot-Action: 1"}
        nobody = await served.http.post(path, json=body, headers={"X-Drpilot-Action": "1"})
        assert nobody.status_code == 401
        assert nobody.json()["error"].startswith("who are you? the console takes the person from the header X-Forwarded-Email")
        stranger = await served.act("mallory@example.com", path, body)
        assert stranger.status_code == 403
        assert stranger.json()["error"] == (
            "mallory@example.com may not start llm-inference: no grant in policy.yaml names mallory@example.com "
            "(or a group of theirs) for llm-inference"
        )
        bad_region = await served.act("alice@example.com", path, {"from": "mars-1", "confirm": "llm-inference"})
        assert bad_region.status_code == 400
        assert bad_region.json()["error"] == '"from" must be one of the regions of llm-inference: us-east-1, us-west-2'
        # Nothing of it started a run.
        assert world.calls == [] and world.changes == []
        [row] = await served.board("carol@example.com")
        assert row["name"] == "llm-inference" and row["run"] is None
        assert row["dns"] == {"weights": world.dns}


async def test_the_board_feed_shows_a_run_waiting_for_approval_as_it_happens(serve_console):
    rb = waiting_runbook()
    world = outage(rb, "us-east-1")
    async with serve_console(world, rb) as served:
        async with served.http.stream("GET", "/events/board", headers=served.as_("carol@example.com")) as events:
            assert events.headers["content-type"].startswith("text/event-stream")
            lines = events.aiter_lines()
            first = await next_event(lines)
            assert "no run" in first["html"]
            started = await served.act(
                "alice@example.com", "/api/runbooks/llm-inference/failover", {"from": "us-east-1", "confirm": "llm-inference"}
            )
            assert started.status_code == 200
            while "<b>waiting for approval</b>" not in (seen := await next_event(lines))["html"]:
                pass
        assert f'<a href="/runs/{RUN}">{RUN}</a>: approval, <b>waiting for approval</b>' in seen["html"]
        assert "by alice@example.com" in seen["html"]
        aborted = await served.act("alice@example.com", f"/api/runs/{RUN}/abort", {"confirm": "llm-inference"})
        assert aborted.status_code == 200 and aborted.json()["message"].startswith("aborted")


async def test_a_drills_child_run_is_steered_by_its_id_with_a_slash(serve_console):
    """A live drill's failover is the run DRILL_ID/failover: its approval goes through the same API."""
    rb = waiting_runbook()
    async with serve_console(outage(rb, "us-east-1"), rb) as served:
        child = "drill:llm-inference-20261207T100000Z/failover"
        request = FailoverInput(runbook=rb, failed_region="us-east-1", trigger="drill", requested_by="drill:llm-inference")
        handle = await served.harness.start(FailoverWorkflow.run, request, workflow_id=child)
        await wait_for(handle, lambda p: p.waiting_for == "approval")
        seen = await served.http.get(f"/api/runs/{child}", headers=served.as_("carol@example.com"))
        assert seen.status_code == 200 and seen.json()["run_id"] == child
        approved = await served.act("alice@example.com", f"/api/runs/{child}/approve")  # no person started it: no four eyes
        assert approved.status_code == 200 and approved.json()["message"] == "approved by alice@example.com"
        missing = await served.http.get("/api/runs/failover:nothing", headers=served.as_("carol@example.com"))
        assert missing.status_code == 404 and missing.json()["error"].startswith("run failover:nothing: ")
        assert (await served.result(child)).status == "completed"


async def test_a_drill_started_from_the_console_is_the_clis_drill_carrying_the_person(serve_console):
    rb = runbook("llm-inference.yaml")
    async with serve_console(World.normal(rb), rb) as served:
        path = "/api/runbooks/llm-inference/drill"
        typo = await served.act("alice@example.com", path, {"mode": "live", "confirm": "llm"})
        assert typo.status_code == 400 and typo.json()["error"].startswith("type the runbook's name to confirm")
        viewer = await served.act("carol@example.com", path, {"mode": "live", "confirm": "llm-inference"})
        assert viewer.status_code == 403
        assert viewer.json()["error"] == "carol@example.com may not start llm-inference: in policy.yaml, grants[1] gives view, not start"
        rehearsal = await served.act("alice@example.com", path, {"confirm": "llm-inference"})  # the console is not in a sandbox
        assert rehearsal.status_code == 400
        assert rehearsal.json()["error"] == (
            "a rehearsal drill runs against a sandbox twin, and DRPILOT_SANDBOX is not set: `source DIR/env` of "
            "`drpilot sandbox up` first, or pass mode live for the real environment"
        )
        started = await served.act("alice@example.com", path, {"mode": "live", "confirm": "llm-inference"})
        assert started.status_code == 200, started.text
        drill_id = started.json()["run_id"]
        assert drill_id.startswith("drill:llm-inference-")
        handle = served.harness.client.get_workflow_handle(drill_id)
        assert (await handle.describe()).workflow_type == "DrillWorkflow"  # drpilot drill run's workflow, as it starts it
        started_event = (await handle.fetch_history()).events[0].workflow_execution_started_event_attributes
        [request] = await served.harness.client.data_converter.decode(started_event.input.payloads, [DrillInput])
        assert (request.requested_by, request.mode, request.from_region) == ("alice@example.com", "live", "us-east-1")
        await handle.terminate("the test's drill")

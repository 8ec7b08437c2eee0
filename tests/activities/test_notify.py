"""notify.send against a local HTTP receiver (starlette on uvicorn, 127.0.0.1): what each kind
of receiver gets, and which failures Temporal retries."""

from __future__ import annotations

import socket
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.contracts import NotifyInput, RunEvent
from activities.notify import NotifyActivities
from drpilot.domain.runbook import Notifier
from tests.support.loopback import uvicorn_on_loopback
from tests.support.pagerduty import pagerduty
from tests.support.runbooks import runbook

EVENT = RunEvent(
    event="approval_needed", run_id="failover:llm-inference", runbook="llm-inference", action="failover",
    at=datetime(2026, 12, 1, 23, 0, tzinfo=UTC), trigger="alert", requested_by="alertmanager receiver drpilot",
    text="waiting for approval: drpilot approve failover:llm-inference",
)


@pytest.fixture(scope="module")
def receiver():
    received: list[dict] = []

    async def hook(request: Request):
        received.append({"path": request.url.path, "body": await request.json(), "key": request.headers.get("idempotency-key")})
        status = int(request.path_params["status"])
        return JSONResponse({"ok": status < 300}, status_code=status)

    app = Starlette(routes=[Route("/hook/{status:int}/{secret:path}", hook, methods=["POST"])])
    with uvicorn_on_loopback(app) as url:
        yield url, received


def send(notifier: Notifier, env: dict[str, str] | None = None):
    return ActivityEnvironment().run(NotifyActivities(env=env or {}).send, NotifyInput(notifier=notifier, event=EVENT))


def test_a_json_receiver_gets_the_event_with_an_idempotency_key(receiver):
    url, received = receiver
    result = send(Notifier(kind="json", url=f"{url}/hook/200/t0ken"))
    assert result.delivered and result.status == 200
    assert result.target == url  # never the path, which may carry a secret
    assert received[-1]["body"]["event"] == "approval_needed"
    assert received[-1]["body"]["text"] == "waiting for approval: drpilot approve failover:llm-inference"
    assert received[-1]["key"] == "failover:llm-inference/approval_needed/2026-12-01T23:00:00+00:00"


def test_a_slack_receiver_gets_text_from_the_url_in_the_workers_environment(receiver):
    url, received = receiver
    result = send(Notifier(kind="slack", url_env="SLACK_WEBHOOK_URL"), {"SLACK_WEBHOOK_URL": f"{url}/hook/200/T000/B000"})
    assert result.delivered
    assert received[-1]["body"]["text"] == (
        "drpilot failover:llm-inference: waiting for approval: drpilot approve failover:llm-inference"
    )


@pytest.mark.parametrize("status", [500, 503, 429])
def test_a_failing_or_rate_limiting_receiver_is_retried(receiver, status):
    url, _ = receiver
    with pytest.raises(ApplicationError) as caught:
        send(Notifier(url=f"{url}/hook/{status}/x"))
    assert not caught.value.non_retryable
    assert f"receiver answered {status}" in caught.value.message


def test_an_unreachable_receiver_is_retried():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ApplicationError) as caught:
        send(Notifier(url=f"http://127.0.0.1:{port}/hook"))
    assert not caught.value.non_retryable and caught.value.type == "NotifyUnreachable"


def test_a_refusing_receiver_or_a_missing_url_is_not_retried(receiver):
    url, _ = receiver
    with pytest.raises(ApplicationError) as refused:
        send(Notifier(url=f"{url}/hook/404/x"))
    assert refused.value.non_retryable and "receiver refused it (404" in refused.value.message
    with pytest.raises(ApplicationError) as unset:
        send(Notifier(url_env="SLACK_WEBHOOK_URL"))
    assert unset.value.non_retryable
    assert "SLACK_WEBHOOK_URL is not set in the worker's environment" in unset.value.message


def test_a_runbook_notifier_needs_exactly_one_of_url_and_url_env():
    with pytest.raises(ValidationError) as caught:
        runbook("llm-inference.yaml", spec__notifications=[{"kind": "slack"}])
    assert "spec.notifications.0: give exactly one of url and url_env" in str(caught.value)
    rb = runbook("llm-inference.yaml", spec__notifications=[{"kind": "slack", "url_env": "SLACK_WEBHOOK_URL", "events": ["failed"]}])
    assert rb.spec.notifications[0].events == ["failed"]


def test_a_slack_approval_request_carries_approve_and_reject_buttons(receiver):
    url, received = receiver
    send(Notifier(kind="slack", url=f"{url}/hook/200/T000/B000"))
    section, actions = received[-1]["body"]["blocks"]
    assert section["text"] == {"type": "plain_text", "text": f"drpilot failover:llm-inference: {EVENT.text}"}
    assert [(b["action_id"], b["value"], b["style"]) for b in actions["elements"]] == [
        ("drpilot_approve", "failover:llm-inference", "primary"), ("drpilot_reject", "failover:llm-inference", "danger"),
    ]


def test_pagerduty_triggers_and_resolves_one_incident_per_run():
    key = "R0UT1NGKEY0123456789abcdefghijkl"
    notifier = Notifier(kind="pagerduty", url_env="PD_URL", routing_key_env="PD_KEY")
    with pagerduty() as service:
        env = {"PD_URL": service.url, "PD_KEY": key}
        assert send(notifier, env).status == 202  # approval_needed: trigger
        for event, text in (("failed", "failed: no healthy destination"), ("completed", "completed: RTO 41s"), ("started", "started")):
            result = ActivityEnvironment().run(
                NotifyActivities(env=env).send, NotifyInput(notifier=notifier, event=EVENT.model_copy(update={"event": event, "text": text}))
            )
            assert result.delivered == (event != "started")  # PagerDuty hears no "started"
    triggered, failed, resolved = service.events
    assert triggered["event_action"] == "trigger" and triggered["payload"]["severity"] == "warning"
    assert failed["payload"]["severity"] == "critical" and resolved["event_action"] == "resolve"
    # The test environment's Temporal run is "test-run": one dedup key for the whole run.
    assert {e["dedup_key"] for e in service.events} == {"drpilot/test/test-run"}
    assert service.incidents == {"drpilot/test/test-run": "resolved"}


def test_pagerduty_without_its_key_is_not_retried_and_never_says_the_key():
    with pytest.raises(ApplicationError) as unset:
        send(Notifier(kind="pagerduty", routing_key_env="PD_KEY"))
    assert unset.value.non_retryable and "PD_KEY is not set in the worker's environment" in unset.value.message
    with pytest.raises(ValidationError) as caught:
        runbook("llm-inference.yaml", spec__notifications=[{"kind": "pagerduty"}])
    assert "pagerduty needs routing_key_env" in str(caught.value)

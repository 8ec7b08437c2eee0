"""Run events to people: a generic JSON webhook, a Slack-compatible incoming webhook (with
Approve / Reject buttons when a run waits for approval, answered by the console's
/slack/interactions), or PagerDuty's Events API v2.

One POST per call. A receiver that is down, slow, rate-limiting (429) or failing (5xx)
raises a retryable error, so Temporal's retry policy delivers it later; one that refuses
the request (other 4xx) or a URL that cannot be had raises a non-retryable one: retrying
cannot help, and the workflow records it in the run instead of failing the run. Every POST
carries an Idempotency-Key (run, event, time), so a retry after a lost answer can be
dropped by a receiver that honours it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any, Self
from urllib.parse import urlsplit

import httpx
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.contracts import NOTIFY_SEND, ErrorType, NotifyInput, NotifyResult, RunEvent
from drpilot.domain.settings import Settings

TIMEOUT_SECONDS = 10.0


# Slack's Block Kit: a section's text holds at most 3,000 characters (api.slack.com/reference/block-kit/blocks).
SLACK_SECTION_MAX = 3000
APPROVE, REJECT = "drpilot_approve", "drpilot_reject"  # action_id of the buttons: drpilot/console/slack.py


def slack_body(event: RunEvent) -> dict[str, Any]:
    # Slack incoming webhooks take {"text": ...}; Mattermost and Rocket.Chat accept the same.
    text = f"drpilot {event.run_id}: {event.text}"
    if event.event != "approval_needed":
        return {"text": text}
    # The buttons post to the Slack app's interactivity URL: the console's /slack/interactions.
    # plain_text, so nothing in a runbook name or an alert's text is read as markup.
    def button(action_id: str, label: str, style: str) -> dict[str, Any]:
        return {"type": "button", "action_id": action_id, "style": style, "value": event.run_id,
                "text": {"type": "plain_text", "text": label}}

    return {"text": text, "blocks": [
        {"type": "section", "text": {"type": "plain_text", "text": text[:SLACK_SECTION_MAX]}},
        {"type": "actions", "block_id": "drpilot_approval", "elements": [
            button(APPROVE, "Approve", "primary"), button(REJECT, "Reject (abort)", "danger"),
        ]},
    ]}


# PagerDuty Events API v2 (developer.pagerduty.com/docs/events-api-v2/trigger-events): a
# trigger opens or updates the incident of its dedup_key, a resolve closes it; summary at
# most 1,024 characters, dedup_key at most 255; 202 accepted, 400 invalid, 429 throttled.
PAGERDUTY_URL = "https://events.pagerduty.com/v2/enqueue"
PAGERDUTY_ACTIONS = {"approval_needed": "trigger", "held": "trigger", "rolled_back": "trigger", "failed": "trigger",
                     "completed": "resolve"}
PAGERDUTY_SEVERITY = {"approval_needed": "warning", "held": "warning", "rolled_back": "error", "failed": "critical"}


def pagerduty_body(event: RunEvent, routing_key: str, dedup_key: str) -> dict[str, Any] | None:
    """The Events API v2 event, or None for an event PagerDuty does not hear (started, readiness)."""
    action = PAGERDUTY_ACTIONS.get(event.event)
    if action is None:
        return None
    body: dict[str, Any] = {"routing_key": routing_key, "event_action": action, "dedup_key": dedup_key[:255]}
    if action == "trigger":
        body["payload"] = {
            "summary": f"drpilot {event.run_id}: {event.text}"[:1024], "source": f"drpilot/{event.runbook}",
            "severity": PAGERDUTY_SEVERITY[event.event], "timestamp": event.at.isoformat(), "component": event.runbook,
            "group": event.action, "class": event.event,
            "custom_details": {"run_id": event.run_id, "trigger": event.trigger, "requested_by": event.requested_by},
        }
    return body


def json_body(event: RunEvent) -> dict[str, Any]:
    return event.model_dump(mode="json")


class NotifyActivities:
    def __init__(self, client: httpx.Client | None = None, env: Mapping[str, str] | None = None):
        self.client = client or httpx.Client(timeout=TIMEOUT_SECONDS)
        self.env = os.environ if env is None else env

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        return cls()

    def _url(self, input: NotifyInput) -> str:
        notifier = input.notifier
        if notifier.url:
            return notifier.url
        if notifier.kind == "pagerduty" and not notifier.url_env:
            return PAGERDUTY_URL
        url = self.env.get(notifier.url_env or "", "")
        if not url.startswith(("http://", "https://")):
            self._unconfigured(input, notifier.url_env, "is not set" if not url else "does not hold an http(s):// URL")
        return url

    def _unconfigured(self, input: NotifyInput, name: str | None, said: str) -> None:
        raise ApplicationError(
            f"notification {input.event.event} of {input.event.run_id}: {name} {said} in the "
            "worker's environment; set it where the worker runs",
            type=ErrorType.NOTIFY_UNCONFIGURED, non_retryable=True,
        )

    def _body(self, input: NotifyInput) -> dict[str, Any] | None:
        notifier, event = input.notifier, input.event
        if notifier.kind == "slack":
            return slack_body(event)
        if notifier.kind == "pagerduty":
            key = self.env.get(notifier.routing_key_env or "", "").strip()
            if not key:
                self._unconfigured(input, notifier.routing_key_env, "is not set")
            # One incident per run: the workflow id is reused by the next run of the runbook, its Temporal run id is not.
            info = activity.info()
            return pagerduty_body(event, key, f"drpilot/{info.workflow_id}/{info.workflow_run_id}")
        return json_body(event)

    @activity.defn(name=NOTIFY_SEND)
    def send(self, input: NotifyInput) -> NotifyResult:
        url = self._url(input)
        where = urlsplit(url)
        target = f"{where.scheme}://{where.netloc}"
        event = input.event
        body = self._body(input)
        if body is None:
            return NotifyResult(delivered=False, target=target)  # not an event this receiver hears
        key = f"{event.run_id}/{event.event}/{event.at.isoformat()}"
        what = f"notification {event.event} of {event.run_id} to {target}"
        try:
            response = self.client.post(url, json=body, headers={"Idempotency-Key": key})
        except httpx.HTTPError as exc:  # refused, reset, timed out: the receiver may come back
            raise ApplicationError(f"{what}: {type(exc).__name__}: {exc}", type=ErrorType.NOTIFY_UNREACHABLE) from None
        if response.status_code == 429 or response.status_code >= 500:
            raise ApplicationError(f"{what}: receiver answered {response.status_code}", type=ErrorType.NOTIFY_RETRY)
        if response.status_code >= 300:
            raise ApplicationError(
                f"{what}: receiver refused it ({response.status_code} {response.text[:200]})",
                type=ErrorType.NOTIFY_REFUSED, non_retryable=True,
            )
        return NotifyResult(delivered=True, status=response.status_code, target=target)

    def all(self) -> list[Callable]:
        return [self.send]

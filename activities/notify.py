"""Run events to people: a generic JSON webhook or a Slack-compatible incoming webhook.

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


def slack_body(event: RunEvent) -> dict[str, Any]:
    # Slack incoming webhooks take {"text": ...}; Mattermost and Rocket.Chat accept the same.
    return {"text": f"drpilot {event.run_id}: {event.text}"}


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
        url = self.env.get(notifier.url_env or "", "")
        if not url.startswith(("http://", "https://")):
            said = "is not set" if not url else "does not hold an http(s):// URL"
            raise ApplicationError(
                f"notification {input.event.event} of {input.event.run_id}: {notifier.url_env} {said} in the "
                "worker's environment; set it where the worker runs",
                type=ErrorType.NOTIFY_UNCONFIGURED, non_retryable=True,
            )
        return url

    @activity.defn(name=NOTIFY_SEND)
    def send(self, input: NotifyInput) -> NotifyResult:
        url = self._url(input)
        where = urlsplit(url)
        target = f"{where.scheme}://{where.netloc}"
        event = input.event
        body = slack_body(event) if input.notifier.kind == "slack" else json_body(event)
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

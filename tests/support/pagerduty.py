"""PagerDuty's Events API v2 on 127.0.0.1, as PagerDuty documents it
(developer.pagerduty.com/docs/events-api-v2/trigger-events, .../resolve-events): POST
/v2/enqueue with a 32-character routing_key; `trigger` needs payload.summary (at most 1,024
characters), payload.source and payload.severity (critical, error, warning, info) and opens
or updates the incident of its dedup_key; `resolve` closes it. 202 with the dedup_key when
accepted, 400 "invalid event" otherwise. Nothing else of PagerDuty (services, escalation)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.support.loopback import uvicorn_on_loopback

SEVERITIES = ("critical", "error", "warning", "info")


@dataclass
class PagerDuty:
    url: str = ""
    events: list[dict] = field(default_factory=list)
    incidents: dict[str, str] = field(default_factory=dict)  # dedup_key -> triggered | resolved

    def problems(self, event: dict) -> list[str]:
        found = []
        if len(event.get("routing_key", "")) != 32:
            found.append("routing_key must be a 32 character integration key")
        action = event.get("event_action")
        if action not in ("trigger", "acknowledge", "resolve"):
            found.append("event_action must be trigger, acknowledge or resolve")
        if action != "trigger" and not event.get("dedup_key"):
            found.append("dedup_key is required for acknowledge and resolve")
        if action == "trigger":
            payload = event.get("payload") or {}
            if not payload.get("summary") or len(payload["summary"]) > 1024:
                found.append("payload.summary is required, at most 1024 characters")
            if not payload.get("source"):
                found.append("payload.source is required")
            if payload.get("severity") not in SEVERITIES:
                found.append("payload.severity must be critical, error, warning or info")
        return found

    async def enqueue(self, request: Request) -> JSONResponse:
        event = await request.json()
        self.events.append(event)
        if errors := self.problems(event):
            return JSONResponse({"status": "invalid event", "message": "Event object is invalid", "errors": errors}, status_code=400)
        key = event.get("dedup_key") or f"pd-{len(self.events)}"
        self.incidents[key] = {"trigger": "triggered", "resolve": "resolved"}.get(event["event_action"], "acknowledged")
        return JSONResponse({"status": "success", "message": "Event processed", "dedup_key": key}, status_code=202)


@contextmanager
def pagerduty() -> Iterator[PagerDuty]:
    service = PagerDuty()
    with uvicorn_on_loopback(Starlette(routes=[Route("/v2/enqueue", service.enqueue, methods=["POST"])])) as url:
        service.url = f"{url}/v2/enqueue"
        yield service

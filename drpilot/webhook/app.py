"""The Alertmanager webhook: POST /v1/alertmanager, /healthz, /readyz, /metrics.

A request is checked in the order that costs an attacker the least of our time: the bearer
token before any of the body is read, the body read in chunks and dropped at the limit,
then JSON, then the payload's shape. Each alert then goes through the guardrails
(guardrails.py) and the answer lists, per alert, what was done and why. Runs are started,
never waited for: Alertmanager's webhook timeout is short, a failover is not.

Alertmanager retries a notification that got a 5xx, so when Temporal or the worker does not
answer the webhook says 503: the retry finds the same run (duplicates attach).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import KW_ONLY, dataclass, field
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from structlog.stdlib import BoundLogger
from temporalio.api.workflowservice.v1 import GetSystemInfoRequest
from temporalio.client import Client

from drpilot.domain.settings import Settings
from drpilot.frontdoor.logs import get_logger
from drpilot.frontdoor.temporal import TemporalUnavailable
from drpilot.webhook.guardrails import (
    Clock,
    Decision,
    DnsWeights,
    Guardrails,
    KillSwitch,
    Unavailable,
    utc_now,
)
from drpilot.webhook.payload import Notification, shape_problem
from drpilot.webhook.rules import Routing

PATH = "/v1/alertmanager"
# Alertmanager sends at most max_alerts per notification (default: all); 1,000 alerts with
# their labels and annotations are well under this.
MAX_BODY = 4 * 1024 * 1024
# A client that has not sent its whole body by then is holding a connection, not alerting.
BODY_SECONDS = 10.0
READY_SECONDS = 3.0


class TokenSource:
    """The bearer token: a fixed one (DRPILOT_WEBHOOK_TOKEN) or a file, read again whenever
    its mtime changes so a rotated secret needs no restart. Never logged, never repr'd."""

    def __init__(self, token: str | None = None, file: Path | None = None):
        if not token and file is None:
            raise ValueError("a webhook token is required")
        self._token = token or None
        self.file = file
        self._mtime: int | None = None
        if file is not None:
            self._read()  # an unreadable file at start is the operator's error, said at once

    def __repr__(self) -> str:
        return f"TokenSource(file={self.file})"

    def _read(self) -> None:
        assert self.file is not None
        stat = self.file.stat()
        if stat.st_mtime_ns != self._mtime:
            self._token = self.file.read_text(encoding="utf-8").strip() or None
            self._mtime = stat.st_mtime_ns

    def current(self) -> str | None:
        if self.file is not None:
            try:
                self._read()
            except OSError as exc:  # mid-rotation: keep the last token read
                get_logger().warning("webhook token file unreadable; keeping the last token", file=str(self.file), error=exc.strerror)
        return self._token

    def accepts(self, header: str | None) -> bool:
        token = self.current()
        if not token or not header:
            return False
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer":
            return False
        return hmac.compare_digest(given.strip().encode(), token.encode())


class Metrics:
    """The webhook's own registry: it is its own process, and the Temporal SDK's exporter
    belongs to a worker's runtime, which the webhook does not have."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.received = Counter("drpilot_webhook_alerts_received", "Alerts received.", registry=r)
        self.matched = Counter("drpilot_webhook_alerts_matched", "Alerts a rule matched.", ["rule"], registry=r)
        self.started = Counter("drpilot_webhook_runs_started", "Runs alerts started.", ["runbook"], registry=r)
        self.attached = Counter("drpilot_webhook_runs_attached", "Alerts that attached to a running run.", ["runbook"], registry=r)
        self.refused = Counter(
            "drpilot_webhook_alerts_refused", "Firing alerts that started nothing, by reason.", ["outcome", "reason"], registry=r
        )
        self.resolved = Counter("drpilot_webhook_alerts_resolved", "Resolved alerts recorded.", ["runbook"], registry=r)
        self.requests = Counter("drpilot_webhook_requests", "Webhook requests by HTTP status.", ["code"], registry=r)
        self.latency = Histogram("drpilot_webhook_request_duration_seconds", "Time to answer a webhook request.", registry=r)

    def count(self, decision: Decision) -> None:
        if decision.rule:
            self.matched.labels(decision.rule).inc()
        if decision.outcome == "started":
            self.started.labels(decision.runbook).inc()
        elif decision.outcome == "attached":
            self.attached.labels(decision.runbook).inc()
        elif decision.outcome == "resolved":
            self.resolved.labels(decision.runbook or "").inc()
        else:
            self.refused.labels(decision.outcome, decision.code).inc()


@dataclass(eq=False)
class Webhook:
    routing: Routing
    settings: Settings
    token: TokenSource
    connect: Callable[[], Awaitable[Client]]
    dns_weights: DnsWeights
    _: KW_ONLY
    kill_switch: KillSwitch = field(default_factory=KillSwitch)
    clock: Clock = utc_now
    max_body: int = MAX_BODY
    body_seconds: float = BODY_SECONDS
    metrics: Metrics = field(init=False, default_factory=Metrics)
    _guardrails: Guardrails | None = field(init=False, default=None)
    _connecting: asyncio.Lock = field(init=False, default_factory=asyncio.Lock)
    log: BoundLogger = field(init=False, default_factory=lambda: get_logger(component="webhook"))

    async def guardrails(self) -> Guardrails:
        async with self._connecting:
            if self._guardrails is None:
                client = await self.connect()
                self._guardrails = Guardrails(
                    self.routing, client, self.settings, self.dns_weights, kill_switch=self.kill_switch, clock=self.clock
                )
            return self._guardrails

    async def aclose(self) -> None:
        """Stop watching runs (ActiveRuns); the process is ending or the test is over."""
        if self._guardrails is not None:
            await self._guardrails.aclose()

    # ------------------------------------------------------------------ endpoints
    async def alertmanager(self, request: Request) -> Response:
        began = time.perf_counter()
        response = await self._alertmanager(request)
        self.metrics.latency.observe(time.perf_counter() - began)
        self.metrics.requests.labels(str(response.status_code)).inc()
        return response

    async def _alertmanager(self, request: Request) -> Response:
        if not self.token.accepts(request.headers.get("authorization")):
            return _problem(401, "missing or wrong Authorization: Bearer token", {"WWW-Authenticate": "Bearer"})
        body = await self._body(request)
        if isinstance(body, Response):
            return body
        try:
            data = json.loads(body)
        except (ValueError, RecursionError) as exc:
            reason = exc.msg if isinstance(exc, json.JSONDecodeError) else "not UTF-8 JSON" if isinstance(exc, UnicodeDecodeError) else "nested too deeply"
            return _problem(400, f"body is not JSON: {reason}")
        try:
            notification = Notification.model_validate(data)
        except (ValidationError, RecursionError) as exc:
            reason = shape_problem(exc) if isinstance(exc, ValidationError) else "nested too deeply"
            return _problem(422, f"not an Alertmanager version 4 webhook payload: {reason}")
        return await self._decide(notification)

    async def _body(self, request: Request) -> bytes | Response:
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_body:
            return _problem(413, f"body over {self.max_body} bytes")
        body = bytearray()
        try:
            async with asyncio.timeout(self.body_seconds):
                async for chunk in request.stream():
                    body += chunk
                    if len(body) > self.max_body:
                        return _problem(413, f"body over {self.max_body} bytes")
        except TimeoutError:
            return _problem(408, f"body not received within {self.body_seconds:g}s")
        except ClientDisconnect:
            return _problem(400, "client disconnected before sending the whole body")
        return bytes(body)

    async def _decide(self, notification: Notification) -> Response:
        self.metrics.received.inc(len(notification.alerts))
        try:
            guardrails = await self.guardrails()
        except TemporalUnavailable as exc:
            return self._unavailable(exc, [])
        # All at once: a notification's duplicates then share one decision (Guardrails._once).
        outcomes = await asyncio.gather(
            *(guardrails.decide(alert, notification.receiver) for alert in notification.alerts), return_exceptions=True
        )
        answers: list[dict] = []
        failed: BaseException | None = None
        for alert, decision in zip(notification.alerts, outcomes, strict=True):
            if isinstance(decision, BaseException):
                if not isinstance(decision, Unavailable | TemporalUnavailable):
                    raise decision
                failed = failed or decision
                continue
            self.metrics.count(decision)
            self.log.info(
                "alert " + decision.outcome, alertname=alert.name, fingerprint=alert.fingerprint,
                rule=decision.rule, runbook=decision.runbook, region=decision.region,
                run_id=decision.run_id, reason=decision.reason or None, group_key=notification.groupKey,
            )
            answers.append(_answer(alert.name, alert.fingerprint, decision))
        if failed is not None:
            return self._unavailable(failed, answers)
        if notification.truncatedAlerts:
            self.log.warning("Alertmanager truncated alerts", truncated=notification.truncatedAlerts, group_key=notification.groupKey)
        return JSONResponse({"receiver": notification.receiver, "groupKey": notification.groupKey, "alerts": answers})

    def _unavailable(self, exc: BaseException, answers: list[dict]) -> Response:
        self.log.warning("webhook cannot decide: Temporal or the worker is not answering", error=str(exc))
        return JSONResponse({"error": f"{exc}; Alertmanager retries", "alerts": answers}, status_code=503)

    async def healthz(self, request: Request) -> Response:
        return PlainTextResponse("ok\n")

    async def readyz(self, request: Request) -> Response:
        try:
            async with asyncio.timeout(READY_SECONDS):
                client = (await self.guardrails()).client
                await client.workflow_service.get_system_info(GetSystemInfoRequest())
        except TimeoutError:
            return PlainTextResponse(f"not ready: Temporal did not answer within {READY_SECONDS:g}s\n", status_code=503)
        except Exception as exc:  # unreachable, refused, TLS: all mean not ready, with why
            return PlainTextResponse(f"not ready: {exc}\n", status_code=503)
        return PlainTextResponse("ready\n")

    async def metrics_endpoint(self, request: Request) -> Response:
        return Response(generate_latest(self.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    def app(self) -> Starlette:
        return Starlette(routes=[
            Route(PATH, self.alertmanager, methods=["POST"]),
            Route("/healthz", self.healthz, methods=["GET"]),
            Route("/readyz", self.readyz, methods=["GET"]),
            Route("/metrics", self.metrics_endpoint, methods=["GET"]),
        ])


def _answer(alertname: str, fingerprint: str, decision: Decision) -> dict:
    return {
        "alertname": alertname, "fingerprint": fingerprint, "decision": decision.line(),
        "outcome": decision.outcome, "reason": decision.reason, "rule": decision.rule,
        "runbook": decision.runbook, "region": decision.region, "run_id": decision.run_id,
    }


def _problem(status: int, reason: str, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse({"error": reason}, status_code=status, headers=headers)

"""Blocks of kind http: one request to a system of the user's (feature flags, a ticket, a
queue's admin API), and its preflight.

One request per call, carrying the `Idempotency-Key` the workflow derived from the run and
the block (the IETF httpapi draft "The Idempotency-Key HTTP Header Field"): a retry after a
lost answer, or after a worker died mid-request, is the same request to a receiver that
honours it, so a retried block has one effect. What is retried is left to the activity's
retry policy (workflows/calls.py): a 5xx, a 408 / 429 (the receiver says "later"), a
timeout or a refused connection raise a retryable error; any other 4xx, or a status other
than the expected one, a non-retryable one (retrying the same request cannot help).

Secrets: a header's value is read here, from the worker's environment variable the runbook
names; it is never returned, raised or logged (errors name the variable, not its value, and
never echo the receiver's body, which might).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from typing import Self
from urllib.parse import urlsplit

import httpx
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.contracts import (
    BLOCK_HTTP,
    BLOCK_HTTP_PREFLIGHT,
    ErrorType,
    HttpBlockInput,
    HttpBlockResult,
    HttpPreflightInput,
    HttpPreflightResult,
)
from drpilot.domain.settings import Settings

# Statuses that mean "not now" rather than "no" (RFC 9110 15.5.9 Request Timeout, RFC 6585
# 4 Too Many Requests): retried like a 5xx.
LATER = (408, 429)


def target_of(url: str) -> str:
    """The URL without its query or fragment (which may carry a token), for messages."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


class HttpBlockActivities:
    def __init__(
        self, client: httpx.Client | None = None, env: Mapping[str, str] | None = None,
        origins: Mapping[str, str] | None = None,
    ):
        self.client = client or httpx.Client()
        self.env = os.environ if env is None else env
        self.origins = dict(origins or {})  # the sandbox's rewrites (settings.providers.http_map)

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        return cls(origins=settings.providers.http_map)

    def _dialled(self, url: str) -> str:
        parts = urlsplit(url)
        origin = f"{parts.scheme}://{parts.netloc}"
        return self.origins[origin] + url[len(origin):] if origin in self.origins else url

    @activity.defn(name=BLOCK_HTTP_PREFLIGHT)
    def preflight(self, input: HttpPreflightInput) -> HttpPreflightResult:
        """Read-only: whether this worker holds every environment variable the block's
        requests read (a missing token is found before any change, not after the switch)."""
        return HttpPreflightResult(missing=[name for name in input.env if not self.env.get(name)])

    @activity.defn(name=BLOCK_HTTP)
    def call(self, input: HttpBlockInput) -> HttpBlockResult:
        call, target = input.call, target_of(input.call.url)
        what = f"block {input.block}: {call.method} {target}"
        headers = {"Idempotency-Key": input.idempotency_key}
        for header, name in call.headers_from_env.items():
            value = self.env.get(name)
            if not value:
                raise ApplicationError(
                    f"{what}: the worker's environment has no {name} (the {header} header); set it where the worker runs",
                    type=ErrorType.BLOCK_HTTP_UNCONFIGURED, non_retryable=True,
                )
            headers[header] = value
        started = time.monotonic()
        try:
            response = self.client.request(
                call.method, self._dialled(call.url), json=call.body, headers=headers, timeout=input.timeout_seconds
            )
        except httpx.HTTPError as exc:  # refused, reset, timed out: the receiver may come back
            raise ApplicationError(f"{what}: {type(exc).__name__}", type=ErrorType.BLOCK_HTTP_RETRY) from None
        status = response.status_code
        if status >= 500 or status in LATER:
            raise ApplicationError(f"{what}: the receiver answered {status}", type=ErrorType.BLOCK_HTTP_RETRY)
        done = status == input.expect if input.expect is not None else 200 <= status < 300
        if not done:
            expected = input.expect if input.expect is not None else "2xx"
            raise ApplicationError(
                f"{what}: the receiver answered {status} {response.reason_phrase}, expected {expected}",
                type=ErrorType.BLOCK_HTTP_REFUSED, non_retryable=True,
            )
        return HttpBlockResult(status=status, target=target, seconds=round(time.monotonic() - started, 3))

    def all(self) -> list[Callable]:
        return [self.preflight, self.call]

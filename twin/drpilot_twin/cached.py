"""A slow answer kept for a fraction of a second: the twin's parts ask for readiness, DNS
weights and artifact completeness on every request, and each may be a network call."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any


class Cached:
    """The last answer of `source`, refreshed at most every `ttl` seconds. When the call fails,
    `on_error(exc)` gives the answer; without it the last good answer stands (a part being
    restarted must not make every region look unready). `last_error` says why, for status."""

    def __init__(
        self,
        source: Callable[[], Any],
        ttl: float,
        initial: Any,
        on_error: Callable[[Exception], Any] | None = None,
    ):
        self._source = source
        self._ttl = ttl
        self._value = initial
        self._on_error = on_error
        self._at = float("-inf")
        self._lock = threading.Lock()
        self.last_error: str | None = None

    def __call__(self) -> Any:
        with self._lock:
            now = time.monotonic()
            if now - self._at >= self._ttl:
                try:
                    self._value = self._source()
                    self.last_error = None
                except Exception as exc:  # reported in status, not raised into a request
                    self.last_error = f"{type(exc).__name__}: {exc}"
                    if self._on_error is not None:
                        self._value = self._on_error(exc)
                self._at = now
            return self._value

    def invalidate(self) -> None:
        with self._lock:
            self._at = float("-inf")

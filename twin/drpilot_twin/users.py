"""Steady inference traffic that follows the live DNS weights, so regions have error rates
and latencies to analyse during a traffic shift.

Real clients resolve the weighted record and land on a region in proportion to its weight;
here each tick picks the region by smooth weighted round-robin over the weights the
`weights()` callable last returned (the twin wires it to the DNS records in moto / the
Cloud DNS emulator), refreshed every `refresh_seconds`. Round-robin rather than random
keeps the split exact over any window, so a test at weight 10 sees 10 % of the traffic.

Only loopback endpoints are accepted: this is a twin part and must never send anywhere else.
"""

from __future__ import annotations

import ipaddress
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx

from drpilot.domain.runbook import Runbook

DEFAULT_BODY: dict[str, Any] = {
    "inputs": [{"name": "text_input", "shape": [1], "datatype": "BYTES", "data": ["traffic"]}]
}


def _is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))  # ceil without floats drifting
    return ordered[int(rank) - 1]


@dataclass
class RegionTraffic:
    """What one region's model server answered to the generated traffic."""

    sent: int = 0
    ok: int = 0
    errors: int = 0  # non-2xx answers and transport failures
    codes: Counter[str] = field(default_factory=Counter)  # "200", "500", "connect-error", ...
    latencies: deque[float] = field(default_factory=lambda: deque(maxlen=5000))  # seconds, answered ones

    @property
    def error_rate(self) -> float:
        done = self.ok + self.errors
        return self.errors / done if done else 0.0

    def p(self, q: float) -> float:
        return percentile(list(self.latencies), q)

    def summary(self) -> dict[str, Any]:
        """JSON-ready numbers for the control API and `drpilot sandbox status`."""
        return {
            "sent": self.sent,
            "ok": self.ok,
            "errors": self.errors,
            "error_rate": round(self.error_rate, 4),
            "p50_ms": round(self.p(50) * 1000, 1),
            "p99_ms": round(self.p(99) * 1000, 1),
            "codes": dict(self.codes),
        }

    def copy(self) -> RegionTraffic:
        return RegionTraffic(self.sent, self.ok, self.errors, Counter(self.codes), deque(self.latencies, maxlen=5000))


class _SmoothRoundRobin:
    """nginx's smooth weighted round-robin: exact proportions, no bursts to one region."""

    def __init__(self) -> None:
        self._current: dict[str, int] = {}

    def pick(self, weights: Mapping[str, int]) -> str | None:
        live = {r: w for r, w in weights.items() if w > 0}
        if not live:
            return None
        total = sum(live.values())
        self._current = {r: self._current.get(r, 0) + w for r, w in live.items()}
        chosen = max(sorted(self._current), key=lambda r: self._current[r])
        self._current[chosen] -= total
        return chosen


class TrafficGenerator:
    """Sends `rate_per_second` inference requests, split across regions by the live weights."""

    def __init__(
        self,
        endpoints: Mapping[str, str],
        weights: Callable[[], Mapping[str, int]],
        rate_per_second: float = 20.0,
        *,
        path: str = "/v2/models/llm-7b/infer",
        body: Any = None,
        method: str = "POST",
        refresh_seconds: float = 0.5,
        timeout_seconds: float = 10.0,
        max_in_flight: int = 32,
    ):
        if rate_per_second <= 0:
            raise ValueError(f"rate_per_second must be > 0, got {rate_per_second}")
        foreign = sorted(url for url in endpoints.values() if not _is_loopback(url))
        if foreign:
            raise ValueError(f"traffic is only sent to loopback endpoints; refusing {', '.join(foreign)}")
        self.endpoints = {r: url.rstrip("/") for r, url in endpoints.items()}
        self._weights_source = weights
        self.rate_per_second = rate_per_second
        self.path = path
        self.body = DEFAULT_BODY if body is None and method == "POST" else body
        self.method = method
        self.refresh_seconds = refresh_seconds
        self.timeout_seconds = timeout_seconds
        self.max_in_flight = max_in_flight
        self._lock = threading.Lock()
        self._stats: dict[str, RegionTraffic] = {r: RegionTraffic() for r in self.endpoints}
        self._weights: dict[str, int] = {}
        self._in_flight = 0
        self.skipped = 0  # ticks with no region to send to, or too many requests in flight
        self.weight_errors = 0  # failed calls to weights(); the last good weights are kept
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._client: httpx.Client | None = None

    @classmethod
    def for_runbook(
        cls,
        runbook: Runbook,
        endpoints: Mapping[str, str],
        weights: Callable[[], Mapping[str, int]],
        rate_per_second: float = 20.0,
        **kwargs: Any,
    ) -> TrafficGenerator:
        """Traffic shaped like the runbook's first warm-up request (its inference path and
        body), or a generic KServe v2 request to its first model."""
        spec = runbook.spec
        if spec.warmup:
            first = spec.warmup[0]
            kwargs.setdefault("path", first.path)
            kwargs.setdefault("method", first.method)
            kwargs.setdefault("body", first.body)
        elif spec.models:
            kwargs.setdefault("path", f"/v2/models/{spec.models[0].name}/infer")
        return cls(endpoints, weights, rate_per_second, **kwargs)

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._client = httpx.Client(
            timeout=self.timeout_seconds,
            limits=httpx.Limits(max_connections=self.max_in_flight, max_keepalive_connections=self.max_in_flight),
            trust_env=False,  # never route loopback traffic through a proxy from the environment
        )
        self._pool = ThreadPoolExecutor(max_workers=self.max_in_flight, thread_name_prefix="traffic")
        self._refresh_weights()
        self._thread = threading.Thread(target=self._run, name="traffic-generator", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        thread, pool, client = self._thread, self._pool, self._client
        self._thread = self._pool = self._client = None
        if thread is not None:
            thread.join(timeout=10)
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        if client is not None:
            client.close()

    def __enter__(self) -> TrafficGenerator:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ results
    def stats(self) -> dict[str, RegionTraffic]:
        """A snapshot per region of what was sent and answered so far."""
        with self._lock:
            return {r: s.copy() for r, s in self._stats.items()}

    def reset(self) -> None:
        with self._lock:
            self._stats = {r: RegionTraffic() for r in self.endpoints}

    @property
    def weights(self) -> dict[str, int]:
        with self._lock:
            return dict(self._weights)

    # ------------------------------------------------------------------ the loop
    def _refresh_weights(self) -> None:
        try:
            fresh = {r: int(w) for r, w in self._weights_source().items() if r in self.endpoints}
        except Exception:
            self.weight_errors += 1
            return
        with self._lock:
            self._weights = fresh

    def _run(self) -> None:
        chooser = _SmoothRoundRobin()
        # Held here: stop() clears self._pool while this loop may still be finishing a tick.
        pool = self._pool
        interval = 1.0 / self.rate_per_second
        next_tick = time.monotonic()
        next_refresh = next_tick + self.refresh_seconds
        while not self._stop.is_set():
            now = time.monotonic()
            if now >= next_refresh:
                self._refresh_weights()
                next_refresh = now + self.refresh_seconds
            region = chooser.pick(self.weights)
            stats = None
            with self._lock:
                if region is not None and self._in_flight < self.max_in_flight:
                    self._in_flight += 1
                    stats = self._stats[region]
                    stats.sent += 1
            if stats is None:
                self.skipped += 1
            else:
                try:
                    pool.submit(self._send, region, stats)
                except RuntimeError:  # pool shut down by stop()
                    break
            next_tick += interval
            # After a stall (e.g. a slow weights() call) do not burst to catch up.
            next_tick = max(next_tick, time.monotonic() - interval)
            self._stop.wait(max(next_tick - time.monotonic(), 0))

    def _send(self, region: str, stats: RegionTraffic) -> None:
        url = self.endpoints[region] + self.path
        started = time.monotonic()
        code: str
        try:
            if self.method == "POST":
                response = self._client.post(url, json=self.body)
            else:
                response = self._client.request(self.method, url)
            code = str(response.status_code)
            ok = 200 <= response.status_code < 300
        except httpx.TimeoutException:
            code, ok = "timeout", False
        except httpx.HTTPError as exc:
            code, ok = type(exc).__name__, False
        elapsed = time.monotonic() - started
        with self._lock:
            # `stats` is the object counted at send time: a reset() meanwhile leaves the new
            # window clean instead of counting answers it never sent.
            self._in_flight -= 1
            stats.codes[code] += 1
            if ok:
                stats.ok += 1
            else:
                stats.errors += 1
            if code.isdigit():
                stats.latencies.append(elapsed)


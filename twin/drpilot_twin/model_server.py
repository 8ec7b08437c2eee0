"""One region's model server in the twin: KServe v2 health, readiness, inference and metrics.

It stands where the runbook's region endpoint would be (the sandbox maps the endpoint URL
to this server's loopback port), so warm-up, health gates and traffic analysis exercise
the same HTTP paths they would against Triton / KServe in production:

    GET  /v2/health/live              200 unless the region is down
    GET  /v2/health/ready             200 when `readiness()` says so, else 503 {"reason"}
    GET  /v2/models/{name}/ready      the same, per served model (404 for an unknown one)
    GET  /v2/models/{name}/versions/{version}/ready
                                      200 when the region's ready pods loaded that version,
                                      404 when they did not (see `version_ready` below)
    POST /v2/models/{name}/infer      a KServe v2 inference response after the simulated latency
    POST /v2/models/{name}/generate_stream
                                      a streamed completion (Triton's generate extension):
                                      server-sent events, the first after the simulated latency
    GET  /metrics                     Prometheus text: requests, latency histogram, DNS weight

What it reads, on every request: the fault board (region down, extra latency, the error
ramp), `readiness()` (the twin wires it to "this region's Deployments have ready pods and
its model artifacts are present") and `weight()` (the region's live DNS weight, which
decides whether the error ramp applies). Both callables are cached for a fraction of a
second because they may be network calls and a traffic generator sends dozens of requests
a second.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import socket
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from drpilot.domain.runbook import Runbook
from drpilot_twin.cached import Cached
from drpilot_twin.faults import ColdModel, FaultBoard

# readiness() answers True / False, or (ready, reason) so a 503 can say why.
Readiness = Callable[[], bool | tuple[bool, str]]
# weight() answers the region's current DNS weight (0-100), or None when unknown.
Weight = Callable[[], int | None]
# version_ready(model, version) answers whether the serving pods loaded that model version,
# and if not why (the twin reads what each pod loaded when it started).
VersionReady = Callable[[str, str], tuple[bool, str]]

# Seconds; wide enough for the default 2 s p99 rollback limit and fine enough for loopback
# answers of a few milliseconds.
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

_MODEL_PATH = re.compile(r"^/v2/models/([^/]+)(?:/versions/([^/]+))?(/ready|/infer|/generate_stream)?$")
# A streamed completion's events after the first, each this long apart (a token's decode time).
STREAM_EVENTS = 4
STREAM_EVENT_SECONDS = 0.05


@dataclass(frozen=True)
class RequestRecord:
    """What the server answered for one inference request, for tests and the control API."""

    model: str
    code: int
    seconds: float


class _Metrics:
    """Counters and histograms in memory, rendered as Prometheus text exposition format."""

    def __init__(self, region: str):
        self.region = region
        self._lock = threading.Lock()
        self.requests: Counter[tuple[str, int]] = Counter()
        self._buckets: dict[str, list[int]] = {}
        self._sum: Counter[str] = Counter()
        self._count: Counter[str] = Counter()

    def observe(self, model: str, code: int, seconds: float) -> None:
        with self._lock:
            self.requests[(model, code)] += 1
            buckets = self._buckets.setdefault(model, [0] * len(BUCKETS))
            for i, bound in enumerate(BUCKETS):
                if seconds <= bound:
                    buckets[i] += 1
            self._sum[model] += seconds
            self._count[model] += 1

    def render(self, weight: int | None, ready: bool, models: Iterable[str]) -> str:
        region = _label(self.region)
        lines = [
            "# HELP inference_requests_total Inference requests answered, by model and HTTP status.",
            "# TYPE inference_requests_total counter",
        ]
        with self._lock:
            for (model, code), n in sorted(self.requests.items()):
                lines.append(
                    f'inference_requests_total{{region="{region}",model="{_label(model)}",code="{code}"}} {n}'
                )
            lines += [
                "# HELP inference_request_duration_seconds Time to answer an inference request.",
                "# TYPE inference_request_duration_seconds histogram",
            ]
            for model in sorted(set(models) | set(self._count)):
                buckets = self._buckets.get(model, [0] * len(BUCKETS))
                labels = f'region="{region}",model="{_label(model)}"'
                for bound, n in zip(BUCKETS, buckets, strict=True):
                    lines.append(f'inference_request_duration_seconds_bucket{{{labels},le="{bound}"}} {n}')
                count = self._count.get(model, 0)
                lines.append(f'inference_request_duration_seconds_bucket{{{labels},le="+Inf"}} {count}')
                lines.append(f"inference_request_duration_seconds_sum{{{labels}}} {self._sum.get(model, 0.0)!r}")
                lines.append(f"inference_request_duration_seconds_count{{{labels}}} {count}")
        lines += [
            "# HELP drpilot_sandbox_region_weight The region's DNS weight as the model server last read it.",
            "# TYPE drpilot_sandbox_region_weight gauge",
            f'drpilot_sandbox_region_weight{{region="{region}"}} {"NaN" if weight is None else weight}',
            "# HELP drpilot_sandbox_region_ready 1 when the region's model server reports ready.",
            "# TYPE drpilot_sandbox_region_ready gauge",
            f'drpilot_sandbox_region_ready{{region="{region}"}} {int(ready)}',
        ]
        return "\n".join(lines) + "\n"


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class ModelServer:
    """A region's KServe v2 model server on 127.0.0.1 (see the module docstring)."""

    def __init__(
        self,
        region: str,
        board: FaultBoard,
        *,
        readiness: Readiness | None = None,
        weight: Weight | None = None,
        version_ready: VersionReady | None = None,
        models: Iterable[str] = (),
        port: int = 0,
        base_latency_seconds: float = 0.02,
        cache_seconds: float = 0.2,
    ):
        self.region = region
        self.board = board
        self.models = list(models)
        self.base_latency_seconds = base_latency_seconds
        self._port = port
        # Readiness that cannot be checked is not readiness; a DNS weight that cannot be read
        # has not changed (the record is still there), so the last one stands.
        self._readiness = Cached(
            readiness or (lambda: True),
            cache_seconds,
            (False, "not checked yet"),
            on_error=lambda exc: (False, f"readiness check failed: {type(exc).__name__}: {exc}"),
        )
        self._weight = Cached(weight or (lambda: None), cache_seconds, None)
        # Without a twin to say what pods loaded, a served model is ready at any version.
        self._version_ready = version_ready or (lambda model, version: (True, ""))
        self._metrics = _Metrics(region)
        self._lock = threading.Lock()
        self._ramp_count = 0  # requests seen while the error ramp applied
        self._cold: ColdModel | None = None  # the cold_model fault last seen, and requests since
        self._cold_served = 0
        self._records: list[RequestRecord] = []
        self.refused_while_down = 0
        self._httpd: _Httpd | None = None
        self._thread: threading.Thread | None = None
        self.url = ""

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        if self._httpd is not None:
            return
        httpd = _Httpd(("127.0.0.1", self._port), _Handler)
        httpd.model_server = self
        self._httpd = httpd
        host, port = httpd.server_address[:2]
        self._thread = threading.Thread(
            target=httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"model-server-{self.region}",
            daemon=True,
        )
        self._thread.start()
        self.url = f"http://{host}:{port}"
        # The socket listens from bind(), so a client can connect now; one round trip proves
        # the serving thread answers too.
        with socket.create_connection((host, port), timeout=5) as sock:
            sock.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            while sock.recv(4096):
                pass

    def stop(self) -> None:
        httpd, thread = self._httpd, self._thread
        self._httpd = self._thread = None
        if httpd is None:
            return
        httpd.shutdown()
        httpd.close_connections()
        httpd.server_close()
        if thread is not None:
            thread.join(timeout=5)
        httpd.join_handlers(timeout=5)

    def __enter__(self) -> ModelServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ state for tests
    @property
    def records(self) -> list[RequestRecord]:
        with self._lock:
            return list(self._records)

    def counts(self) -> Counter[tuple[str, int]]:
        """Inference requests answered so far, by (model, HTTP status)."""
        with self._metrics._lock:
            return Counter(self._metrics.requests)

    @property
    def inference_requests(self) -> int:
        return sum(self.counts().values())

    @property
    def inference_errors(self) -> int:
        return sum(n for (_, code), n in self.counts().items() if code >= 500)

    def readiness(self) -> tuple[bool, str]:
        answer = self._readiness()
        if isinstance(answer, tuple):
            return bool(answer[0]), str(answer[1])
        return bool(answer), "" if answer else "not ready"

    def weight(self) -> int | None:
        return self._weight()

    def version_ready(self, model: str, version: str) -> tuple[bool, str]:
        try:
            return self._version_ready(model, version)
        except Exception as exc:  # not knowing what the pods loaded is not "loaded"
            return False, f"version check failed: {type(exc).__name__}: {exc}"

    # ------------------------------------------------------------------ behaviour
    def down(self) -> bool:
        return self.region in self.board.now.region_down

    def ready(self) -> tuple[bool, str]:
        if self.down():
            return False, f"region {self.region} is down"
        return self.readiness()

    def _ramp_fails(self, rate: float) -> bool:
        # Deterministic by request count (Bresenham): over any run of n ramped requests,
        # floor or ceil of n * rate of them fail, so a test sees the rate it set, every time.
        with self._lock:
            n = self._ramp_count
            self._ramp_count += 1
        return math.floor((n + 1) * rate) > math.floor(n * rate)

    def _cold_extra(self) -> float:
        """Extra seconds of this request while the region's model is cold (the cold_model fault)."""
        cold = self.board.now.cold_model.get(self.region)
        with self._lock:
            if cold != self._cold:  # set, changed or cleared: counted afresh
                self._cold, self._cold_served = cold, 0
            if cold is None:
                return 0.0
            served, self._cold_served = self._cold_served, self._cold_served + 1
        return cold.extra(served)

    def infer(self, model: str, body: bytes) -> tuple[int, dict[str, Any]]:
        started = time.monotonic()
        code, payload = self._infer(model, body)
        seconds = time.monotonic() - started
        self._metrics.observe(model, code, seconds)
        with self._lock:
            self._records.append(RequestRecord(model, code, seconds))
            del self._records[:-10_000]  # bounded: a long rehearsal must not grow memory
        return code, payload

    def _infer(self, model: str, body: bytes) -> tuple[int, dict[str, Any]]:
        if model not in self.models:
            return 404, {"error": f"model {model!r} is not served in region {self.region}"}
        ready, reason = self.ready()
        if not ready:
            return 503, {"error": f"region {self.region} is not ready: {reason}"}
        try:
            request = json.loads(body or b"{}")
        except ValueError as exc:
            return 400, {"error": f"request body is not JSON: {exc}"}
        if not isinstance(request, dict) or not isinstance(request.get("inputs"), list):
            return 400, {"error": 'expected a KServe v2 inference request: {"inputs": [...]}'}
        faults = self.board.now
        # Not divided by the speed: a rehearsal compresses waits (bakes, TTLs, pod starts),
        # never what a request takes, so the runbook's p99 limit judges it unchanged.
        delay = self.base_latency_seconds + faults.extra_latency_seconds.get(self.region, 0.0) + self._cold_extra()
        time.sleep(max(delay, 0.0))
        ramp = faults.error_ramp.get(self.region)
        if ramp is not None:
            weight = self.weight()
            if weight is not None and weight >= ramp.at_weight and self._ramp_fails(ramp.error_rate):
                return 500, {
                    "error": f"inference failed in region {self.region} "
                    f"(error ramp: {ramp.error_rate:.0%} at weight >= {ramp.at_weight})"
                }
        inputs = request["inputs"]
        first = inputs[0] if inputs and isinstance(inputs[0], dict) else {}
        response: dict[str, Any] = {
            "model_name": model,
            "outputs": [
                {
                    "name": "text_output",
                    "shape": [1],
                    "datatype": "BYTES",
                    "data": [f"{model}@{self.region}: {len(json.dumps(first.get('data', [])))} bytes in"],
                }
            ],
        }
        if "id" in request:
            response["id"] = request["id"]
        return 200, response

    def metrics_text(self) -> str:
        return self._metrics.render(self.weight(), self.ready()[0], self.models)


class _Httpd(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    # socketserver's default backlog of 5 drops connections when a traffic generator and a
    # warm-up open dozens at once; a dropped SYN costs a 1 s retransmit, seen as latency.
    request_queue_size = 128
    model_server: ModelServer

    def __init__(self, *args: Any, **kwargs: Any):
        self._open: set[socket.socket] = set()
        self._handlers: list[threading.Thread] = []  # pruned of finished ones as it grows
        self._open_lock = threading.Lock()
        super().__init__(*args, **kwargs)

    def process_request(self, request: Any, client_address: Any) -> None:
        thread = threading.Thread(
            target=self.process_request_thread, args=(request, client_address), daemon=True
        )
        with self._open_lock:
            self._open.add(request)
            self._handlers = [t for t in self._handlers if t.is_alive()]
            self._handlers.append(thread)
        thread.start()

    def shutdown_request(self, request: Any) -> None:
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hung up mid-answer (a stopped traffic generator, a timed-out probe)
        # is normal for a server; anything else is a bug worth the traceback.
        if not isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            super().handle_error(request, client_address)

    def close_connections(self) -> None:
        # Keep-alive clients hold a handler thread in recv(); shutting their sockets down
        # wakes it, so stop() leaves no thread behind.
        with self._open_lock:
            sockets = list(self._open)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def join_handlers(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with self._open_lock:
            threads = list(self._handlers)
        for thread in threads:
            thread.join(timeout=max(deadline - time.monotonic(), 0))


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as a real model server behind a LB
    # Headers and body are two writes; with Nagle on, a keep-alive client waits out the
    # peer's delayed ACK (~40 ms) on every answer, which would swamp simulated latency.
    disable_nagle_algorithm = True
    server: _Httpd
    timeout = 60  # an idle keep-alive connection frees its thread after this

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass

    def do_GET(self) -> None:
        self._route("GET")

    def do_POST(self) -> None:
        self._route("POST")

    def _route(self, method: str) -> None:
        ms = self.server.model_server
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        path = self.path.split("?", 1)[0]
        if ms.down():
            with ms._lock:
                ms.refused_while_down += 1
            self._json(503, {"error": f"region {ms.region} is down"})
            return
        if method == "GET" and path == "/v2/health/live":
            self._json(200, {"live": True})
        elif method == "GET" and path == "/v2/health/ready":
            ready, reason = ms.ready()
            self._json(200 if ready else 503, {"ready": ready, **({} if ready else {"reason": reason})})
        elif method == "GET" and path == "/metrics":
            self._send(200, ms.metrics_text().encode(), "text/plain; version=0.0.4; charset=utf-8")
        elif method == "GET" and path == "/v2":
            self._json(200, {"name": f"drpilot-sandbox-{ms.region}", "version": "2", "extensions": []})
        elif match := _MODEL_PATH.match(path):
            self._model(ms, method, match.group(1), match.group(3), body, version=match.group(2))
        else:
            self._json(404, {"error": f"no route for {method} {path}"})

    def _model(
        self, ms: ModelServer, method: str, model: str, action: str | None, body: bytes, version: str | None = None
    ) -> None:
        if action == "/infer" and method == "POST":
            self._json(*ms.infer(model, body))
            return
        if action == "/generate_stream" and method == "POST":
            self._stream(ms, model, body)
            return
        if method != "GET" or action in ("/infer", "/generate_stream"):
            self._json(405, {"error": f"{method} is not allowed here"})
            return
        if model not in ms.models:
            self._json(404, {"error": f"model {model!r} is not served in region {ms.region}"})
            return
        ready, reason = ms.ready()
        if action == "/ready" and version is not None and ready:
            # KServe v2 model ready, version-specific: 200 {"name", "ready": true} when that
            # version is loaded; a version the server does not hold is "model not found",
            # 404 (https://kserve.github.io/website/docs/concepts/architecture/data-plane/
            # v2-protocol: GET v2/models/<name>[/versions/<version>]/ready).
            loaded, why = ms.version_ready(model, version)
            if loaded:
                self._json(200, {"name": model, "version": version, "ready": True})
            else:
                self._json(404, {"error": f"{model} {version} not loaded: {why}"})
        elif action == "/ready":
            self._json(200 if ready else 503, {"name": model, "ready": ready, **({} if ready else {"reason": reason})})
        else:
            self._json(200, {"name": model, "platform": "drpilot-sandbox", "versions": [], "inputs": [], "outputs": []})

    def _stream(self, ms: ModelServer, model: str, body: bytes) -> None:
        """Triton's generate extension, streaming (docs.nvidia.com/deeplearning/triton-inference-server/
        user-guide/docs/protocol/extension_generate.html): POST {"text_input": ..., "parameters": {...}},
        answered with server-sent events `data: {"model_name", "text_output"}`, one per piece of text.
        The first event comes after the request's latency (what a user waits for); the rest follow
        at decode pace. Answered as an inference request (same checks, metrics and faults)."""
        try:
            request = json.loads(body or b"{}")
        except ValueError:
            request = None
        if not isinstance(request, dict) or not isinstance(request.get("text_input"), str):
            self._json(400, {"error": 'expected a generate request: {"text_input": "...", "parameters": {}}'})
            return
        code, payload = ms.infer(model, json.dumps({"inputs": [{"data": [request["text_input"]]}]}).encode())
        if code != 200:
            self._json(code, payload)
            return
        text = payload["outputs"][0]["data"][0]
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for i in range(STREAM_EVENTS):
            if i:
                time.sleep(STREAM_EVENT_SECONDS)
            event = f"data: {json.dumps({'model_name': model, 'text_output': text if i == 0 else ' .'})}\n\n".encode()
            self.wfile.write(b"%x\r\n%s\r\n" % (len(event), event))
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")

    def _json(self, code: int, payload: dict[str, Any]) -> None:
        self._send(code, json.dumps(payload).encode(), "application/json")

    def _send(self, code: int, body: bytes, content_type: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def seed_model_servers(
    runbook: Runbook,
    board: FaultBoard,
    *,
    readiness: Callable[[str], Readiness] | None = None,
    weight: Callable[[str], Weight] | None = None,
) -> dict[str, ModelServer]:
    """One (unstarted) model server per runbook region, serving every model of the runbook.

    `readiness(region)` and `weight(region)` build that region's callables; the twin passes
    its Kubernetes / S3 / DNS views here."""
    models = [m.name for m in runbook.spec.models]
    return {
        region: ModelServer(
            region,
            board,
            readiness=readiness(region) if readiness else None,
            weight=weight(region) if weight else None,
            models=models,
        )
        for region in runbook.spec.regions
    }

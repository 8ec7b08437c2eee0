"""The twin's control API: read and change its faults, and see what it is doing.

    GET    /faults   current faults (drpilot_twin.faults.Faults as JSON)
    PUT    /faults   replace every fault with the body (fields left out are cleared)
    PATCH  /faults   change only the fields in the body
    DELETE /faults   clear every fault
    GET    /status   the twin's parts and URLs, DNS weights, replicas and traffic per region

`drpilot sandbox fault set|clear|show` talks to it; so can curl. Loopback only.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable
from dataclasses import fields
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from drpilot_twin.faults import FaultBoard, Faults

# Fields whose values name regions: a typo there would be a fault that silently never fires.
_REGION_SETS = ("region_down", "pods_stalled", "velero_partially_failed", "velero_failed")
_REGION_MAPS = (
    "pod_start_seconds", "error_ramp", "extra_latency_seconds", "gpu_free", "node_provision_seconds",
    "image_missing", "quota", "cold_model", "image_bytes",
)
# What a per-region value is (seconds, unless said here).
_REGION_VALUE: dict[str, type] = {"gpu_free": int, "quota": int, "image_missing": str, "image_bytes": int}


class FaultError(ValueError):
    """A fault the twin cannot apply; the text says which and why."""


# Fields whose values are REGION:MODEL.
_REGION_MODELS = ("gcs_object_missing", "gcs_corrupt")


def check_regions(faults: Faults, regions: Iterable[str]) -> None:
    known = set(regions)
    for name in _REGION_MODELS:
        for value in sorted(getattr(faults, name)):
            region, sep, model = value.partition(":")
            if not sep or not model:
                raise FaultError(f"{name}: expected REGION:MODEL, got {value!r}")
            if region not in known:
                raise FaultError(
                    f"{name}: unknown region {region!r}; the runbook's regions are {', '.join(sorted(known))}"
                )
    for name in (*_REGION_SETS, *_REGION_MAPS):
        unknown = sorted(set(getattr(faults, name)) - known)
        if unknown:
            raise FaultError(
                f"{name}: unknown region(s) {', '.join(unknown)}; the runbook's regions are "
                f"{', '.join(sorted(known))}"
            )


def faults_from_json(data: Any) -> Faults:
    if not isinstance(data, dict):
        raise FaultError("expected a JSON object of fault fields")
    try:
        faults = Faults.from_json(data)
    except (TypeError, ValueError) as exc:
        raise FaultError(str(exc)) from None
    if not 0 <= faults.arc_endpoints_down <= 5:
        raise FaultError(f"arc_endpoints_down={faults.arc_endpoints_down}: an ARC cluster has 5 endpoints; give 0 to 5")
    return faults


# ------------------------------------------------------------------- key=value arguments
def _field_kinds() -> dict[str, str]:
    defaults = Faults()
    kinds = {}
    for f in fields(Faults):
        value = getattr(defaults, f.name)
        if f.name in ("error_ramp", "cold_model"):
            kinds[f.name] = f.name
        elif isinstance(value, frozenset):
            kinds[f.name] = "regions"
        elif isinstance(value, dict):
            kinds[f.name] = "per-region"
        elif isinstance(value, bool):
            kinds[f.name] = "bool"
        elif isinstance(value, int):
            kinds[f.name] = "int"
        else:
            kinds[f.name] = "float"
    return kinds


FAULT_HELP = """\
Faults as key=value (or one JSON object):
  region_down=R1[,R2]          model server and Kubernetes API of R fail
  pods_stalled=R1[,R2]         no free GPU in R (as gpu_free.R=0)
  gpu_free.R=2                 2 GPUs free on R's nodes now, one per node
  node_provision_seconds.R=90  Karpenter takes 90 s to bring up a node in R
  image_missing.R=IMAGE        R's registry lacks IMAGE: pulls fail
  quota.R=96                   GPU-instance vCPU quota of 96 in R
  image_bytes.R=20000000000     R's images are 20 GB: pulls take twice the default's
  pod_start_seconds.R=30       a pod in R takes 30 s to become ready
  glacier_delay_seconds=60     a Glacier restore takes 60 s
  route53_pending_seconds=20   a Route53 change stays PENDING 20 s
  route53_throttle_count=3     the next 3 Route53 calls are throttled
  route53_control_plane_down=1 Route53 changes (and GetChange) answer 503
  arc_endpoints_down=3         the first 3 of the ARC cluster's 5 endpoints fail
  clouddns_pending_seconds=20  a Cloud DNS change stays pending 20 s
  velero_partially_failed=R    Velero restores in R end PartiallyFailed
  velero_failed=R              Velero restores in R end Failed
  error_ramp.R=50:0.2          20% errors in R once its DNS weight >= 50
  extra_latency_seconds.R=0.5  +0.5 s per inference request in R
  cold_model.R=2:40             R's model is cold: its first inference request
                               takes +2 s, the extra falling to none by the 40th
  gcs_object_missing=R:MODEL   MODEL's weights file deleted from R's gs:// copy
  gcs_corrupt=R:MODEL          ... overwritten with other bytes of the same size
  http_fails=BLOCK[,BLOCK]     the HTTP receiver answers BLOCK's requests 503
  aurora_lag_seconds=45        Aurora global databases replicate 45 s behind
  aurora_switchover_fails=1    Aurora cancels every global-database switchover
  job_fails=BLOCK1[,BLOCK2]    the Kubernetes Jobs of these blocks fail
An empty value clears a field (region_down=). Seconds of waits are
simulated (the twin divides them by its --speed); extra latency is
what each request takes, at any speed."""


def _number(key: str, raw: str, kind: type) -> Any:
    try:
        return kind(raw)
    except ValueError:
        raise FaultError(f"{key}={raw!r}: expected {'an integer' if kind is int else 'a number'}") from None


def _ramp(key: str, raw: str) -> dict[str, Any]:
    weight, sep, rate = raw.partition(":")
    if not sep:
        raise FaultError(f"{key}={raw!r}: expected AT_WEIGHT:ERROR_RATE, e.g. 50:0.2 or 50%:20%")
    at_weight = _number(key, weight.strip().rstrip("%"), int)
    rate = rate.strip()
    error_rate = _number(key, rate.rstrip("%"), float) / (100 if rate.endswith("%") else 1)
    if not 0 <= error_rate <= 1:
        raise FaultError(f"{key}={raw!r}: the error rate must be between 0 and 1 (or 0% and 100%)")
    return {"at_weight": at_weight, "error_rate": error_rate}


def _cold(key: str, raw: str) -> dict[str, Any]:
    seconds, sep, requests = raw.partition(":")
    if not sep:
        raise FaultError(f"{key}={raw!r}: expected SECONDS:REQUESTS, e.g. 2:40 (+2 s on the first request, none by the 40th)")
    cold = {"seconds": _number(key, seconds.strip(), float), "requests": _number(key, requests.strip(), int)}
    if cold["seconds"] < 0 or cold["requests"] < 1:
        raise FaultError(f"{key}={raw!r}: seconds must be >= 0 and requests >= 1")
    return cold


def parse_fault_args(args: list[str], current: Faults | None = None) -> dict[str, Any]:
    """`key=value` arguments (or one JSON object) -> a PATCH body for /faults.

    Per-region entries (`pod_start_seconds.us-west-2=30`) merge into `current`'s mapping, so
    setting one region's value keeps the others'.
    """
    current = current or Faults()
    if len(args) == 1 and args[0].lstrip().startswith("{"):
        try:
            data = json.loads(args[0])
        except json.JSONDecodeError as exc:
            raise FaultError(f"not a JSON object: {exc.msg}") from None
        faults_from_json(data)  # validate now, with the same message the API would give
        return data
    kinds = _field_kinds()
    base = current.to_json()
    patch: dict[str, Any] = {}
    for arg in args:
        key, sep, raw = arg.partition("=")
        if not sep:
            raise FaultError(f"{arg!r}: expected key=value (see `drpilot sandbox fault set --help`)")
        name, dot, region = key.strip().replace("-", "_").partition(".")
        if dot:
            region = key.strip().partition(".")[2]  # region names keep their hyphens
        if name not in kinds:
            raise FaultError(f"unknown fault {name!r}; known: {', '.join(sorted(kinds))}")
        kind, raw = kinds[name], raw.strip()
        if kind in ("per-region", "error_ramp", "cold_model"):
            if not dot:
                if raw:
                    raise FaultError(f"{name}: give it per region, e.g. {name}.us-east-1=VALUE")
                patch[name] = {}
                continue
            mapping = patch.setdefault(name, dict(base[name]))
            if not raw:
                mapping.pop(region, None)
            elif kind == "error_ramp":
                mapping[region] = _ramp(key, raw)
            elif kind == "cold_model":
                mapping[region] = _cold(key, raw)
            elif _REGION_VALUE.get(name) is str:
                mapping[region] = raw
            else:
                mapping[region] = _number(key, raw, _REGION_VALUE.get(name, float))
        elif dot:
            raise FaultError(f"{name} is not per region; write {name}=VALUE")
        elif kind == "regions":
            patch[name] = [r.strip() for r in raw.split(",") if r.strip()]
        elif kind == "bool":
            if raw.lower() not in ("", "0", "1", "true", "false"):
                raise FaultError(f"{key}={raw!r}: expected true or false (1 or 0)")
            patch[name] = raw.lower() in ("1", "true")
        elif kind == "int":
            patch[name] = _number(key, raw or "0", int)
        else:
            patch[name] = _number(key, raw or "0", float)
    return patch


# -------------------------------------------------------------------------------- server
class ControlServer:
    """The control API over HTTP on 127.0.0.1 (stdlib server, one thread per request)."""

    def __init__(
        self,
        board: FaultBoard,
        status: Callable[[], dict[str, Any]] | None = None,
        *,
        regions: Iterable[str] | None = None,
        port: int = 0,
        speed: float = 1.0,
    ):
        self.board = board
        self.speed = speed
        self._status = status or (lambda: {})
        self._regions = list(regions) if regions is not None else None
        self._port = port
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.url = ""

    def _checked(self, faults: Faults) -> Faults:
        if self._regions is not None:
            check_regions(faults, self._regions)
        return faults

    def handle(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        """One request -> (status code, JSON body). Kept apart from HTTP for clarity."""
        path = path.split("?", 1)[0].rstrip("/") or "/"
        if path == "/status" and method == "GET":
            return 200, self._status()
        if path == "/healthz" and method == "GET":
            return 200, {"ok": True}
        if path != "/faults":
            return 404, {"error": f"no such path {path}; try /faults or /status"}
        try:
            if method == "GET":
                return 200, self.board.now.to_json()
            if method == "DELETE":
                self.board.clear()
                return 200, self.board.now.to_json()
            if method == "PUT":
                self.board.set(self._checked(faults_from_json(body)))
                return 200, self.board.now.to_json()
            if method == "PATCH":
                if not isinstance(body, dict):
                    raise FaultError("expected a JSON object of fault fields")
                merged = faults_from_json({**self.board.now.to_json(), **body})
                self.board.set(self._checked(merged))
                return 200, self.board.now.to_json()
        except FaultError as exc:
            return 400, {"error": str(exc)}
        return 405, {"error": f"{method} not allowed on /faults"}

    def start(self) -> None:
        control = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw.strip() else None
                except json.JSONDecodeError as exc:
                    code, reply = 400, {"error": f"body is not JSON: {exc.msg}"}
                else:
                    try:
                        code, reply = control.handle(self.command, self.path, body)
                    except Exception as exc:  # a status probe failing must not kill the API
                        code, reply = 500, {"error": f"{type(exc).__name__}: {exc}"}
                data = json.dumps(reply, indent=2, default=str).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_PUT = do_PATCH = do_DELETE = do_POST = _serve

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self._port), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, name="sandbox-control", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if self._thread:
            self._thread.join(timeout=5)
            self._thread = None


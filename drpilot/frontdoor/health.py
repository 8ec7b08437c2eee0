"""The worker's health and metrics endpoint: /healthz, /readyz and /metrics on one port.

/healthz: the process is alive and its event loop answers (a liveness probe restarts a
  worker whose loop is wedged).
/readyz: Temporal answers this worker's client and the worker's pollers are running; 503
  with the reason otherwise (a readiness probe takes a worker that cannot work out of the
  Service, and a rollout waits for it).
/metrics: the Temporal SDK's Prometheus exporter, which also carries drpilot's own run
  metrics (workflows/metrics.py records them through the workflow metric meter). The SDK's
  exporter listens on a private loopback port; this endpoint relays it so probes, the
  ServiceMonitor and the NetworkPolicy deal with one port.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from temporalio.api.workflowservice.v1 import GetSystemInfoRequest
from temporalio.client import Client
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

from drpilot.domain.settings import SettingsError, split_listen
from drpilot.frontdoor.ports import free_loopback_port

# A readiness check that takes longer than this counts as Temporal not answering: the
# kubelet's own probe timeout (infra/kubernetes) is longer, so the 503 says why.
TEMPORAL_CHECK_SECONDS = 3.0
PHASE_BUCKETS = [1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0, 7200.0]
PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class ListenError(SettingsError):
    """The health endpoint cannot listen where DRPILOT_HEALTH_LISTEN says; the text says why."""


@dataclass(frozen=True)
class MetricsRuntime:
    """A Temporal Runtime whose Prometheus exporter listens on `address` (loopback)."""

    runtime: Runtime
    address: str


def metrics_runtime() -> MetricsRuntime:
    # The SDK's exporter cannot report the port it bound, so drpilot picks a free one.
    address = f"127.0.0.1:{free_loopback_port()}"
    telemetry = TelemetryConfig(
        metrics=PrometheusConfig(
            bind_address=address,
            counters_total_suffix=True,
            durations_as_seconds=True,
            # Phases take seconds to an hour; the SDK's default buckets stop at 10 s.
            histogram_bucket_overrides={"drpilot_phase_duration_seconds": PHASE_BUCKETS},
        )
    )
    return MetricsRuntime(Runtime(telemetry=telemetry), address)


@dataclass
class WorkerHealth:
    """What /readyz looks at: the worker's client, and whether its pollers are running."""

    client: Client
    pollers_running: Callable[[], bool]
    sdk_metrics: str  # host:port of the SDK's exporter

    async def ready(self) -> tuple[bool, str]:
        if not self.pollers_running():
            return False, "worker pollers are not running"
        try:
            await self.client.workflow_service.get_system_info(
                GetSystemInfoRequest(), timeout=timedelta(seconds=TEMPORAL_CHECK_SECONDS)
            )
        except Exception as exc:  # any RPC failure means not ready; the text says which
            return False, f"Temporal does not answer: {type(exc).__name__}: {str(exc)[:200]}"
        return True, "ok"


def health_app(health: WorkerHealth) -> Starlette:
    http = httpx.AsyncClient(timeout=5.0)

    async def healthz(_: Request) -> Response:
        return PlainTextResponse("ok\n")

    async def readyz(_: Request) -> Response:
        ok, reason = await health.ready()
        return PlainTextResponse(reason + "\n", status_code=200 if ok else 503)

    async def metrics(_: Request) -> Response:
        try:
            reply = await http.get(f"http://{health.sdk_metrics}/metrics")
        except httpx.HTTPError as exc:
            return PlainTextResponse(f"SDK metrics exporter unreachable: {exc}\n", status_code=503)
        return Response(reply.content, status_code=reply.status_code, media_type=PROMETHEUS_CONTENT_TYPE)

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        yield
        await http.aclose()

    return Starlette(
        routes=[Route("/healthz", healthz), Route("/readyz", readyz), Route("/metrics", metrics)],
        lifespan=lifespan,
    )


class _QuietServer(uvicorn.Server):
    """uvicorn without its signal handlers: the worker owns SIGINT / SIGTERM (graceful
    shutdown), and uvicorn's would replace the worker's and re-raise them on exit."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@contextlib.asynccontextmanager
async def serving(health: WorkerHealth, listen: str) -> AsyncIterator[str]:
    """Serves the health endpoint on `listen` (DRPILOT_HEALTH_LISTEN) while the block runs;
    yields the bound host:port (port 0 picks a free one)."""
    host, port = split_listen("DRPILOT_HEALTH_LISTEN", listen)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ListenError(f"DRPILOT_HEALTH_LISTEN={listen!r}: cannot listen there ({exc.strerror})") from None
    sock.listen(64)
    bound = sock.getsockname()
    config = uvicorn.Config(
        health_app(health), log_level="warning", access_log=False, lifespan="on", timeout_graceful_shutdown=2
    )
    server = _QuietServer(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                task.result()
                raise ListenError(f"DRPILOT_HEALTH_LISTEN={listen!r}: the health endpoint did not start")
            await asyncio.sleep(0.01)
        yield f"{bound[0]}:{bound[1]}"
    finally:
        server.should_exit = True
        await task
        sock.close()

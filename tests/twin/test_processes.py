"""The twin's child processes: real Temporal dev server, Prometheus and Alertmanager."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from drpilot_twin.processes import (
    Alertmanager,
    ChildProcess,
    ProcessError,
    Prometheus,
    TemporalDevServer,
    alertmanager_binary,
    prometheus_binary,
)
from temporalio.client import Client

from tests.support.twin import process_gone


async def test_temporal_dev_server_serves_and_stops(tmp_path):
    server = TemporalDevServer(tmp_path)
    server.start()
    pid = server.pid
    try:
        client = await Client.connect(server.address)
        assert await client.service_client.check_health()
        assert httpx.get(server.ui_url, timeout=5).status_code == 200
        assert (tmp_path / "temporal.db").exists()
        assert server.address.startswith("127.0.0.1:")
    finally:
        server.stop()
    assert process_gone(pid)
    server.stop()  # idempotent


def test_a_child_that_exits_early_is_reported_with_its_log(tmp_path):
    child = ChildProcess(
        "broken", ["sh", "-c", "echo 'bad flag --nope' >&2; exit 3"], tmp_path / "broken.log", lambda: False
    )
    with pytest.raises(ProcessError, match=r"(?s)broken exited with code 3.*bad flag --nope"):
        child.start(timeout=5)


def test_stop_takes_the_whole_process_group(tmp_path):
    # A shell that forks a grandchild ignoring SIGTERM: stop() must leave neither behind.
    script = "trap '' TERM; sleep 300 & echo $! > grandchild; wait"
    child = ChildProcess(
        "stubborn", ["sh", "-c", script], tmp_path / "stubborn.log",
        lambda: (tmp_path / "grandchild").exists() and (tmp_path / "grandchild").read_text().strip() != "",
        cwd=tmp_path,
    )
    child.start(timeout=5)
    pid, grandchild = child.pid, int((tmp_path / "grandchild").read_text())
    child.stop(grace=0.5)
    assert process_gone(pid)
    deadline = time.monotonic() + 5  # SIGKILL is delivered asynchronously
    while not process_gone(grandchild) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert process_gone(grandchild)


@pytest.mark.skipif(alertmanager_binary() is None, reason="Debian prometheus-alertmanager not installed")
def test_alertmanager_delivers_to_drpilots_webhook_at_once(tmp_path, webhook_stand_in):
    hook = webhook_stand_in
    manager = Alertmanager(tmp_path, hook.url, token="s3cret")
    manager.start()
    try:
        alert = {
            "labels": {"alertname": "InferenceRegionDown", "runbook": "llm-inference", "region": "us-east-1"},
            "annotations": {"summary": "us-east-1 is dark"},
            "startsAt": datetime.now(UTC).isoformat(),
        }
        httpx.post(f"{manager.url}/api/v2/alerts", json=[alert], timeout=5).raise_for_status()
        assert hook.received.wait(10), "group_wait 1s: the alert should arrive within seconds"
        assert hook.bodies[0]["alerts"][0]["labels"]["region"] == "us-east-1"
        assert hook.headers[0]["Authorization"] == "Bearer s3cret"
    finally:
        manager.stop()


@pytest.mark.skipif(prometheus_binary() is None, reason="Debian prometheus not installed")
def test_prometheus_scrapes_each_region_every_second(tmp_path):
    class Metrics(BaseHTTPRequestHandler):
        def do_GET(self):
            body = b'inference_requests_total{model="m",code="200"} 7\n'
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    target = ThreadingHTTPServer(("127.0.0.1", 0), Metrics)
    threading.Thread(target=target.serve_forever, daemon=True).start()
    prometheus = Prometheus(tmp_path, {"us-east-1": f"http://127.0.0.1:{target.server_address[1]}"})
    prometheus.start()
    try:
        deadline = time.monotonic() + 15
        result = []
        while time.monotonic() < deadline and not result:
            reply = httpx.get(f"{prometheus.url}/api/v1/query", params={"query": "inference_requests_total"}, timeout=5)
            result = reply.json()["data"]["result"]
            time.sleep(0.2)
        assert result, "no sample scraped within 15 s"
        assert result[0]["metric"]["region"] == "us-east-1"
        assert result[0]["value"][1] == "7"
        # Every second: the interval Prometheus itself reports for the running config.
        config = httpx.get(f"{prometheus.url}/api/v1/status/config", timeout=5).json()["data"]["yaml"]
        assert "scrape_interval: 1s" in config
    finally:
        prometheus.stop()
        target.shutdown()
        target.server_close()

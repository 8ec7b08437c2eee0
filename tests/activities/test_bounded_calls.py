"""Every provider call ends on its own: the worker keeps a blocked activity heartbeating
(drpilot/frontdoor/keepalive.py), so a call that hung for ever would hold its activity until
its start-to-close timeout instead of letting a retry take over."""

from __future__ import annotations

import asyncio
import socket
import threading

import pytest
import urllib3
from kubernetes import client as k8s

from activities.artifacts.activities import ArtifactActivities
from activities.dns.route53 import route53_client
from activities.drills import DrillActivities
from activities.kube import clusters
from activities.kube.clusters import KubeconfigClients
from drpilot.domain.settings import Settings


@pytest.fixture
def aws_env(monkeypatch, tmp_path):
    for name, value in {"AWS_ACCESS_KEY_ID": "AKIATEST", "AWS_SECRET_ACCESS_KEY": "secret", "AWS_DEFAULT_REGION": "us-east-1",
                        "AWS_CONFIG_FILE": str(tmp_path / "config"), "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "creds"),
                        "AWS_EC2_METADATA_DISABLED": "true"}.items():
        monkeypatch.setenv(name, value)


def test_every_aws_client_drpilot_builds_has_bounded_timeouts_and_retries(aws_env):
    clients = {
        "route53": route53_client(),
        "artifacts s3": ArtifactActivities.from_settings(Settings())._s3.current(),
        "drill evidence s3": DrillActivities.from_settings(Settings())._stores.store("s3").s3.current(),
    }
    for name, client in clients.items():
        config = client.meta.config
        assert config.connect_timeout == 5, name
        assert config.read_timeout <= 60, name  # botocore's default is 60 with legacy retries
        assert config.retries == {"mode": "standard", "total_max_attempts": config.retries["total_max_attempts"]}, name
        assert config.retries["total_max_attempts"] <= 5, name


@pytest.fixture
def silent_server():
    """A loopback API server that accepts connections and reads requests but never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    stop = threading.Event()
    held: list[socket.socket] = []

    def serve():
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
                held.append(conn)
            except OSError:
                continue

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    server.close()


async def test_a_kube_call_without_its_own_timeout_ends_on_a_silent_cluster(silent_server, tmp_path, monkeypatch):
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: silent\n"
        f"clusters: [{{name: silent, cluster: {{server: 'http://127.0.0.1:{silent_server}'}}}}]\n"
        "users: [{name: u, user: {token: t}}]\n"
        "contexts: [{name: silent, context: {cluster: silent, user: u}}]\n"
    )
    monkeypatch.setattr(clusters, "REQUEST_TIMEOUT", (1.0, 0.2))  # the real one is (5, 30)
    api = k8s.CoreV1Api(KubeconfigClients(str(kubeconfig))["silent"])
    # No _request_timeout here: the client's default bounds the call. The `kubernetes` client
    # alone would wait for ever (the guard below only keeps a regression from hanging the suite).
    with pytest.raises(urllib3.exceptions.HTTPError) as raised:
        await asyncio.wait_for(asyncio.to_thread(api.list_namespace), 60)
    assert "timed out" in str(raised.value).lower()

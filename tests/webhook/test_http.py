"""What the webhook refuses before any alert is looked at: auth, size, JSON, shape. None of
these may reach Temporal, so the app here has no Temporal at all: connecting fails the test."""

from __future__ import annotations

import json
import os
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from drpilot.domain.settings import Settings
from drpilot.frontdoor.temporal import TemporalUnavailable
from drpilot.webhook.app import PATH, TokenSource, Webhook
from drpilot.webhook.payload import Notification
from tests.support.loopback import uvicorn_on_loopback
from tests.support.runbooks import runbook
from tests.support.webhook import AUTH, TOKEN, alert, notification, routing, rule


class NoTemporal(TemporalUnavailable):
    pass


async def _no_temporal():
    raise NoTemporal("a refused request reached Temporal")


def make_webhook(token: TokenSource | None = None, max_body: int = 4096, body_seconds: float = 10.0) -> Webhook:
    rb = runbook("llm-inference.yaml")

    async def no_dns(_rb):
        raise NoTemporal("a refused request read DNS")

    return Webhook(
        routing((rule(), rb)), Settings(), token or TokenSource(TOKEN), _no_temporal, no_dns,
        max_body=max_body, body_seconds=body_seconds,
    )


@pytest.fixture
async def http():
    webhook = make_webhook()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=webhook.app()), base_url="http://webhook") as client:
        client.webhook = webhook
        yield client


@pytest.mark.parametrize("header", [None, "Bearer wrong-token", f"Basic {TOKEN}", "Bearer", f"Bearer {TOKEN}x", ""])
async def test_missing_or_wrong_bearer_token_is_401(http, header):
    headers = {} if header is None else {"Authorization": header}
    response = await http.post(PATH, json=notification(alert()), headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert TOKEN not in response.text
    assert http.webhook.metrics.registry.get_sample_value("drpilot_webhook_requests_total", {"code": "401"}) == 1


async def test_token_file_is_read_again_when_it_changes(tmp_path: Path):
    secret = tmp_path / "token"
    secret.write_text("first-token\n")
    webhook = make_webhook(TokenSource(file=secret))
    body = {"version": "4"}  # wrong shape: a 422 shows the token was accepted
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=webhook.app()), base_url="http://w") as client:
        assert (await client.post(PATH, json=body, headers={"Authorization": "Bearer first-token"})).status_code == 422
        secret.write_text("second-token\n")
        os.utime(secret, ns=(secret.stat().st_atime_ns, secret.stat().st_mtime_ns + 1_000_000_000))
        assert (await client.post(PATH, json=body, headers={"Authorization": "Bearer first-token"})).status_code == 401
        assert (await client.post(PATH, json=body, headers={"Authorization": "Bearer second-token"})).status_code == 422
    assert "second-token" not in repr(webhook.token)


async def test_body_over_the_limit_is_413_declared_or_streamed(http):
    big = json.dumps(notification(*[alert(fingerprint=str(i)) for i in range(40)])).encode()
    assert len(big) > 4096
    declared = await http.post(PATH, content=big, headers={**AUTH, "Content-Type": "application/json"})
    assert declared.status_code == 413

    async def chunks():  # no Content-Length: the limit is found while reading
        for i in range(0, len(big), 1000):
            yield big[i : i + 1000]

    streamed = await http.post(PATH, content=chunks(), headers=AUTH)
    assert streamed.status_code == 413
    assert streamed.json() == {"error": "body over 4096 bytes"}


@pytest.mark.parametrize("body", [b"{not json", b"\xff\xfe\x00", b"", b"[" * 5000 + b"]" * 5000])
async def test_a_body_that_is_not_json_is_400(http, body):
    response = await http.post(PATH, content=body, headers=AUTH)
    assert response.status_code in (400, 413)
    if len(body) <= 4096:
        assert response.status_code == 400
        assert response.json()["error"].startswith("body is not JSON: ")
        assert "\n" not in response.json()["error"]


@pytest.mark.parametrize(
    "change, where",
    [
        (lambda n: n.update(version="3"), "version"),
        (lambda n: n["alerts"][0].pop("startsAt"), "alerts[0].startsAt"),
        (lambda n: n["alerts"][0]["labels"].update(region=7), "alerts[0].labels.region"),
        (lambda n: n["alerts"][0].update(status="pending"), "alerts[0].status"),
        (lambda n: n.update(alerts={}), "alerts"),
    ],
)
async def test_a_payload_of_the_wrong_shape_is_422_naming_the_field(http, change, where):
    body = notification(alert())
    change(body)
    response = await http.post(PATH, json=body, headers=AUTH)
    assert response.status_code == 422
    error = response.json()["error"]
    assert error.startswith(f"not an Alertmanager version 4 webhook payload: {where}: "), error
    assert "\n" not in error


async def test_health_and_metrics_answer_without_temporal(http):
    assert (await http.get("/healthz")).text == "ok\n"
    ready = await http.get("/readyz")
    assert ready.status_code == 503 and "reached Temporal" in ready.text
    await http.post(PATH, json={}, headers=AUTH)
    metrics = (await http.get("/metrics")).text
    assert 'drpilot_webhook_requests_total{code="422"} 1.0' in metrics
    assert "drpilot_webhook_request_duration_seconds_count 1.0" in metrics


def _valid(body: bytes) -> bool:
    try:
        Notification.model_validate_json(body)
    except (ValidationError, RecursionError):
        return False
    return True


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20,
)
# h11 (the client here) refuses to send a header value with leading or trailing space.
header_text = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40).map(str.strip)


@pytest.fixture(scope="module")
def served_url():
    with uvicorn_on_loopback(make_webhook().app()) as url, httpx.Client(base_url=url, timeout=10) as client:
        yield client


def test_random_bodies_and_headers_get_a_4xx_and_the_server_stays_up(served_url):
    """Over real HTTP to a real uvicorn: whatever arrives, a 4xx, and the next request is served."""
    client = served_url

    @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(
        body=st.one_of(st.binary(max_size=5000), json_values.map(lambda v: json.dumps(v).encode())),
        authorization=st.one_of(st.none(), st.just(f"Bearer {TOKEN}"), header_text),
        content_type=st.one_of(st.none(), header_text),
        extra=st.dictionaries(st.from_regex(r"X-[A-Za-z]{1,8}", fullmatch=True), header_text, max_size=3),
    )
    def check(body, authorization, content_type, extra):
        headers = dict(extra)
        if authorization is not None:
            headers["Authorization"] = authorization
        if content_type is not None:
            headers["Content-Type"] = content_type
        response = client.post(PATH, content=body, headers=headers)
        if authorization == f"Bearer {TOKEN}" and _valid(body):
            # A real payload went on to Temporal, which this app does not have.
            assert response.status_code == 503
        else:
            assert response.status_code in (400, 401, 413, 422), (response.status_code, response.text)
        assert client.get("/healthz").status_code == 200

    check()


def _read_response(sock) -> str:
    """One whole HTTP/1.1 response: the head and then Content-Length bytes of body.

    A single recv() returns whatever TCP delivered so far; uvicorn writes the head and the
    body separately, so under load the first recv() can hold the head alone.
    """
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            return data.decode()
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        (int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
         if line.lower().startswith(b"content-length:")),
        0,
    )
    while len(body) < length:
        chunk = sock.recv(4096)
        if not chunk:
            break
        body += chunk
    return (head + b"\r\n\r\n" + body).decode()


def test_a_client_that_never_sends_its_body_gets_408_and_stalls_nobody_else():
    import socket

    with uvicorn_on_loopback(make_webhook(body_seconds=0.5).app()) as url:
        host, port = url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port))) as slow:
            slow.sendall(
                f"POST {PATH} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
                "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{".encode()
            )
            assert httpx.get(f"{url}/healthz").status_code == 200  # while that one hangs
            slow.settimeout(10)
            answer = _read_response(slow)
        assert answer.startswith("HTTP/1.1 408"), answer
        assert "body not received within 0.5s" in answer

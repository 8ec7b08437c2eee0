"""The http block activity (activities/blocks/http.py) against the twin's HTTP receiver
(loopback): one effect per Idempotency-Key, what is retried and what is not, and the
worker's secrets kept out of everything the activity returns or raises."""

from __future__ import annotations

import pytest
from temporalio.exceptions import ApplicationError

from activities import contracts as c
from activities.blocks.http import HttpBlockActivities

KEY = "drpilot/failover:llm/run-1/flags"
SECRET = "s3cret-token-value"


def request(url: str, **call) -> c.HttpBlockInput:
    return c.HttpBlockInput(
        block="flags", idempotency_key=KEY, timeout_seconds=5,
        call=c.HttpCall(method="POST", url=url, body={"serving": "us-west-2"}, **call),
    )


def test_a_request_sent_twice_with_one_key_has_one_effect(receiver):
    # The runbook's URL, dialled at the receiver as the sandbox maps it (DRPILOT_HTTP_MAP).
    http = HttpBlockActivities(origins={"https://flags.example.com": receiver.url})
    first = http.call(request("https://flags.example.com/api/dr"))
    again = http.call(request("https://flags.example.com/api/dr"))  # a retry: the same input
    assert first.status == again.status == 200 and first.target == "https://flags.example.com/api/dr"
    assert len(receiver.received.deliveries) == 2 and len(receiver.received.effects) == 1
    assert receiver.received.effects[0].path == "/api/dr"


def test_a_5xx_is_retried_and_another_4xx_or_status_is_not(receiver):
    http = HttpBlockActivities()
    receiver.board.update(http_fails=["flags"])
    with pytest.raises(ApplicationError) as down:
        http.call(request(f"{receiver.url}/api/dr"))
    assert down.value.type == c.ErrorType.BLOCK_HTTP_RETRY and not down.value.non_retryable
    assert "503" in str(down.value) and receiver.received.effects == []
    receiver.board.clear()
    with pytest.raises(ApplicationError) as refused:  # the twin's own prefix answers 404
        http.call(request(f"{receiver.url}/_sandbox/flags"))
    assert refused.value.type == c.ErrorType.BLOCK_HTTP_REFUSED and refused.value.non_retryable
    assert "404" in str(refused.value)
    with pytest.raises(ApplicationError) as other:
        http.call(request(f"{receiver.url}/api/dr").model_copy(update={"expect": 201}))
    assert other.value.non_retryable and "expected 201" in str(other.value)


def test_a_token_is_read_from_the_worker_environment_and_never_returned(receiver):
    headers = {"headers_from_env": {"Authorization": "FLAGS_TOKEN"}}
    missing = HttpBlockActivities(env={})
    assert missing.preflight(c.HttpPreflightInput(block="flags", env=["FLAGS_TOKEN"])).missing == ["FLAGS_TOKEN"]
    with pytest.raises(ApplicationError) as unset:
        missing.call(request(f"{receiver.url}/api/dr", **headers))
    assert unset.value.non_retryable and "FLAGS_TOKEN" in str(unset.value) and receiver.received.deliveries == []

    http = HttpBlockActivities(env={"FLAGS_TOKEN": SECRET})
    assert http.preflight(c.HttpPreflightInput(block="flags", env=["FLAGS_TOKEN"])).missing == []
    result = http.call(request(f"{receiver.url}/api/dr", **headers))
    assert "authorization" in receiver.received.deliveries[0].headers
    assert SECRET not in result.model_dump_json()
    receiver.board.update(http_fails=["flags"])
    with pytest.raises(ApplicationError) as failed:
        http.call(request(f"{receiver.url}/api/dr", **headers).model_copy(update={"idempotency_key": KEY.replace("run-1", "run-2")}))
    assert SECRET not in str(failed.value)

"""Approving from Slack: the console's /slack/interactions takes only requests Slack signed
(slack-sdk's verifier: v0, five minutes) and each only once; the Slack user becomes a person
through the users file, or else through their Slack profile's email (users.info, slack-sdk's
WebClient against a server on 127.0.0.1 answering as Slack's Web API documents), and the policy
and the run's four-eyes rule decide as for the page. The outcome replaces the Slack message
through the interaction's response_url (here a receiver on 127.0.0.1)."""

from __future__ import annotations

import asyncio
import json
import time
from urllib.parse import parse_qs, urlencode

import pytest
from slack_sdk import WebClient
from slack_sdk.signature import SignatureVerifier
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from drpilot.console.slack import SlackPeople, Stranger
from tests.support.loopback import uvicorn_in_loop
from tests.support.runbooks import runbook
from tests.support.runs import wait_for
from tests.support.world import outage

RUN = "failover:llm-inference"
SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
USERS = {"U0ALICE": "alice@example.com", "U0CAROL": "carol@example.com"}  # Bob is found by his Slack profile's email
TOKEN = "xoxb-17653672481-19874698323-pdFZKVeTuE8sk7oOcBrzbqgy"
# Slack's users.info (https://api.slack.com/methods/users.info): the user object, its profile's
# email only with the users:read.email scope; an unknown id is ok=false with error user_not_found.
PROFILES = {
    "U0BOB": {"id": "U0BOB", "name": "bob", "deleted": False, "is_bot": False, "profile": {"email": "bob@example.com"}},
    "U0GONE": {"id": "U0GONE", "name": "gone", "deleted": True, "profile": {"email": "gone@example.com"}},
    "U0BOT": {"id": "U0BOT", "name": "deploybot", "deleted": False, "is_bot": True, "profile": {}},
    "U0NOSCOPE": {"id": "U0NOSCOPE", "name": "dora", "deleted": False, "is_bot": False, "profile": {"real_name": "Dora"}},
}


def slack_web_api(asked: list[str]) -> Starlette:
    async def users_info(request: Request) -> Response:
        if request.headers.get("authorization") != f"Bearer {TOKEN}":
            return JSONResponse({"ok": False, "error": "invalid_auth"})
        # Arguments come as a query string or a form body, as Slack's Web API takes them (WebClient posts a form).
        user = request.query_params.get("user") or parse_qs((await request.body()).decode()).get("user", [""])[0]
        asked.append(user)
        if user not in PROFILES:
            return JSONResponse({"ok": False, "error": "user_not_found"})
        return JSONResponse({"ok": True, "user": PROFILES[user]})

    return Starlette(routes=[Route("/api/users.info", users_info, methods=["GET", "POST"])])


def signed(user: str, action_id: str, reply_to: str, *, secret: str = SECRET, at: float | None = None) -> tuple[str, dict[str, str]]:
    payload = {"type": "block_actions", "user": {"id": user}, "response_url": reply_to,
               "actions": [{"action_id": action_id, "value": RUN, "type": "button"}]}
    body = urlencode({"payload": json.dumps(payload)})
    timestamp = str(int(at if at is not None else time.time()))
    signature = SignatureVerifier(secret).generate_signature(timestamp=timestamp, body=body)
    return body, {"X-Slack-Request-Timestamp": timestamp, "X-Slack-Signature": signature,
                  "Content-Type": "application/x-www-form-urlencoded"}


async def test_approving_from_slack_needs_slacks_signature_once_and_another_person(serve_console):
    rb = runbook("llm-inference.yaml", spec__approvals__failover="always")
    replies: asyncio.Queue[dict] = asyncio.Queue()

    async def response_url(request: Request) -> Response:
        await replies.put(await request.json())
        return Response("ok")

    slack_side = Starlette(routes=[Route("/actions/T0/1/x", response_url, methods=["POST"])])
    asked: list[str] = []
    async with uvicorn_in_loop(slack_web_api(asked)) as api_url:
        people = SlackPeople(USERS, WebClient(token=TOKEN, base_url=f"{api_url}/api/"))
        async with serve_console(outage(rb, "us-east-1"), rb, slack=(SECRET, people)) as served, uvicorn_in_loop(slack_side) as slack_url:
            await _approve_from_slack(served, f"{slack_url}/actions/T0/1/x", replies)
            result = await served.result(RUN)
    assert result.status == "completed" and result.approved_by == "bob@example.com"
    assert asked == ["U0MALLORY", "U0BOB"]  # the file's people are never asked about


async def _approve_from_slack(served, reply_to: str, replies: asyncio.Queue[dict]) -> None:
    """The Slack side of the approval, against the console serving a failover waiting for one."""
    post = served.http.post
    await served.act("alice@example.com", "/api/runbooks/llm-inference/failover", {"from": "us-east-1", "confirm": "llm-inference"})
    handle = served.harness.client.get_workflow_handle(RUN)
    await wait_for(handle, lambda p: p.waiting_for == "approval")

    # Not Slack's signature, or too old: 401, nothing done.
    body, headers = signed("U0BOB", "drpilot_approve", reply_to, secret="not-the-secret")
    assert (await post("/slack/interactions", content=body, headers=headers)).status_code == 401
    body, headers = signed("U0BOB", "drpilot_approve", reply_to, at=time.time() - 301)
    stale = await post("/slack/interactions", content=body, headers=headers)
    assert stale.status_code == 401 and "outside five minutes" in stale.json()["error"]
    assert (await handle.query("progress")).get("approved_by") is None

    # Alice started it: the run refuses her approval, and the message says why.
    body, headers = signed("U0ALICE", "drpilot_approve", reply_to)
    assert (await post("/slack/interactions", content=body, headers=headers)).json() == {"ok": True}
    refused = await replies.get()
    assert refused["replace_original"] is False
    assert "four eyes: alice@example.com started this run, so another person must approve it" in refused["text"]
    # The same signed request again is a replay.
    replay = await post("/slack/interactions", content=body, headers=headers)
    assert replay.status_code == 401 and "replayed" in replay.json()["error"]
    # A Slack user neither the file nor Slack knows does nothing.
    body, headers = signed("U0MALLORY", "drpilot_approve", reply_to)
    assert (await post("/slack/interactions", content=body, headers=headers)).status_code == 200
    assert (await replies.get())["text"] == (
        f"drpilot {RUN}: Slack user U0MALLORY is not in the console's --slack-users file, and Slack's users.info "
        "answered user_not_found: nothing was done"
    )

    body, headers = signed("U0BOB", "drpilot_approve", reply_to)
    assert (await post("/slack/interactions", content=body, headers=headers)).status_code == 200
    approved = await replies.get()
    assert approved == {"replace_original": True, "text": f"drpilot {RUN}: approved by bob@example.com (in Slack)"}


async def test_a_slack_user_is_their_slack_profiles_email_when_the_file_does_not_name_them():
    asked: list[str] = []
    async with uvicorn_in_loop(slack_web_api(asked)) as api_url:
        people = SlackPeople(USERS, WebClient(token=TOKEN, base_url=f"{api_url}/api/"))
        assert await people.who("U0ALICE") == "alice@example.com" and asked == []  # the file first
        assert await people.who("U0BOB") == "bob@example.com"
        assert await people.who("U0BOB") == "bob@example.com" and asked == ["U0BOB"]  # asked once in PROFILE_SECONDS
        why = "Slack user {} is not in the console's --slack-users file, and Slack's users.info"
        for user, said in (("U0GONE", "says it is a deactivated account"), ("U0BOT", "says it is a bot"),
                           ("U0NOSCOPE", "gave no email (the Slack app needs the users:read.email scope)")):
            with pytest.raises(Stranger) as refused:
                await people.who(user)
            assert str(refused.value) == f"{why.format(user)} {said}"
        wrong_token = SlackPeople({}, WebClient(token="xoxb-revoked", base_url=f"{api_url}/api/"))
        with pytest.raises(Stranger, match="users.info answered invalid_auth$"):
            await wrong_token.who("U0BOB")
    with pytest.raises(Stranger) as nobody:
        await SlackPeople(USERS).who("U0BOB")
    assert str(nobody.value) == "Slack user U0BOB is not in the console's --slack-users file"

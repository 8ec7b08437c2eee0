"""Approving from Slack: the console's /slack/interactions takes only requests Slack signed
(slack-sdk's verifier: v0, five minutes) and each only once; the Slack user becomes a person
through the users file, and the policy and the run's four-eyes rule decide as for the page.
The outcome replaces the Slack message through the interaction's response_url (here a
receiver on 127.0.0.1)."""

from __future__ import annotations

import asyncio
import json
import time
from urllib.parse import urlencode

from slack_sdk.signature import SignatureVerifier
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.support.loopback import uvicorn_in_loop
from tests.support.runbooks import runbook
from tests.support.runs import wait_for
from tests.support.world import outage

RUN = "failover:llm-inference"
SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
USERS = {"U0ALICE": "alice@example.com", "U0BOB": "bob@example.com", "U0CAROL": "carol@example.com"}


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
    async with serve_console(outage(rb, "us-east-1"), rb, slack=(SECRET, USERS)) as served, uvicorn_in_loop(slack_side) as slack_url:
        reply_to = f"{slack_url}/actions/T0/1/x"
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
        # A Slack user the file does not know does nothing.
        body, headers = signed("U0MALLORY", "drpilot_approve", reply_to)
        unknown = (await post("/slack/interactions", content=body, headers=headers)).json()
        assert unknown["text"] == "Slack user U0MALLORY is not in the console's --slack-users file: nothing was done"

        body, headers = signed("U0BOB", "drpilot_approve", reply_to)
        assert (await post("/slack/interactions", content=body, headers=headers)).status_code == 200
        approved = await replies.get()
        assert approved == {"replace_original": True, "text": f"drpilot {RUN}: approved by bob@example.com (in Slack)"}
        result = await served.result(RUN)
    assert result.status == "completed" and result.approved_by == "bob@example.com"

"""Approving from the incident's Slack channel: `POST /slack/interactions`, the Slack app's
interactivity request URL, answering the Approve / Reject buttons of an approval-needed
notification (activities/notify.py).

A request counts only with a valid Slack signature (v0, within five minutes, compared in
constant time: slack-sdk's own SignatureVerifier) seen for the first time; anything else is
401 and changes nothing. The Slack user becomes a person through the users file
(`--slack-users FILE`: `users: {U012ABCDEF: alice@example.com}`), or else, given the Slack
app's bot token (DRPILOT_SLACK_BOT_TOKEN), through the email of their Slack profile
(users.info, slack-sdk's WebClient); then the console's policy, rate limit and the run's own
four-eyes rule decide, as for the page. Slack wants an answer
within three seconds and an abort answers after compensation, so the request is answered at
once and the outcome replaces the message through the interaction's response_url: "approved
by alice@example.com", or says why not.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs

import httpx
from pydantic import Field
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.signature import SignatureVerifier
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from drpilot.console.actions import Actions, Refused, problem
from drpilot.domain.loader import DocumentError, parse_document, read_document
from drpilot.domain.runbook import Frozen, Text
from drpilot.frontdoor.runs import RunError

WINDOW_SECONDS = 5 * 60  # Slack's: a request older than this may be a replay
MAX_BODY = 64 * 1024
VERBS = {"drpilot_approve": "approve", "drpilot_reject": "abort"}  # activities/notify.py's action_id
# A profile's email is asked again after this: a person leaving the workspace stops counting.
PROFILE_SECONDS = 600.0


class SlackUsersError(DocumentError):
    """A Slack users file that cannot be used."""


class SlackUsers(Frozen):
    users: dict[Text, Text] = Field(description="Slack user id (U012ABCDEF) -> the person's identity in the console's policy.")


def load_slack_users(path: str | Path) -> dict[str, str]:
    path = Path(path)
    text = read_document(path, SlackUsersError)
    return dict(parse_document(text, str(path), SlackUsers, error=SlackUsersError, top="users").users)


class Stranger(Exception):
    """A Slack user who is nobody the console knows: one line saying why."""


@dataclass(eq=False)
class SlackPeople:
    """Who a Slack user is: the users file's entry, else (with a bot token) the email of their
    Slack profile, which the policy names as for the SSO proxy's identities. Slack shows a
    profile's email only to an app with the users:read.email scope; a deactivated account or
    a bot is nobody."""

    users: dict[str, str]
    client: WebClient | None = None  # users.info; None: the file only
    clock: Callable[[], float] = time.monotonic
    _profiles: dict[str, tuple[float, str]] = field(default_factory=dict, init=False)

    async def who(self, user: str) -> str:
        if user in self.users:
            return self.users[user]
        if self.client is None:
            raise Stranger(f"Slack user {user} is not in the console's --slack-users file")
        known = self._profiles.get(user)
        if known is not None and self.clock() - known[0] < PROFILE_SECONDS:
            return known[1]
        email = await asyncio.to_thread(self._email, user)
        self._profiles[user] = (self.clock(), email)
        return email

    def _email(self, user: str) -> str:
        assert self.client is not None
        where = f"Slack user {user} is not in the console's --slack-users file, and Slack's users.info"
        try:
            found = self.client.users_info(user=user)["user"]
        except SlackApiError as exc:
            raise Stranger(f"{where} answered {exc.response.get('error') or exc.response.status_code}") from None
        except (SlackClientError, OSError) as exc:
            raise Stranger(f"{where} could not be asked: {' '.join(str(exc).split())[:200]}") from None
        if found.get("deleted") or found.get("is_bot"):
            raise Stranger(f"{where} says it is {'a deactivated account' if found.get('deleted') else 'a bot'}")
        email = (found.get("profile") or {}).get("email")
        if not email:
            raise Stranger(f"{where} gave no email (the Slack app needs the users:read.email scope)")
        return email


@dataclass(eq=False)
class SlackInteractions:
    verifier: SignatureVerifier
    people: SlackPeople
    actions: Actions
    clock: Callable[[], float] = time.time
    _seen: dict[str, float] = field(default_factory=dict, init=False)  # signatures answered in the window
    _replies: set[asyncio.Task] = field(default_factory=set, init=False)

    async def handle(self, request: Request) -> Response:
        body = await request.body()
        if len(body) > MAX_BODY:
            return problem(413, f"body over {MAX_BODY} bytes")
        timestamp, signature = request.headers.get("x-slack-request-timestamp"), request.headers.get("x-slack-signature")
        try:
            valid = self.verifier.is_valid(body, timestamp, signature)
        except ValueError:  # a timestamp that is not a number
            valid = False
        if not valid:
            return problem(401, "not signed by Slack: a bad X-Slack-Signature, or a timestamp outside five minutes")
        now = self.clock()
        self._seen = {s: at for s, at in self._seen.items() if now - at <= WINDOW_SECONDS}
        if signature in self._seen:
            return problem(401, "a replayed Slack request: this signature was answered already")
        self._seen[signature] = now
        try:
            payload = json.loads(parse_qs(body.decode())["payload"][0])
            user, action = payload["user"]["id"], payload["actions"][0]
            verb, run_id, reply_to = VERBS[action["action_id"]], action["value"], payload.get("response_url", "")
        except (KeyError, IndexError, TypeError, ValueError):
            return problem(400, "not a Slack block_actions payload from a drpilot approval message")
        task = asyncio.ensure_future(self._act(user, verb, run_id, reply_to))
        self._replies.add(task)
        task.add_done_callback(self._replies.discard)
        return JSONResponse({"ok": True})

    async def _act(self, user: str, verb: str, run_id: str, reply_to: str) -> None:
        """Who pressed (perhaps asking Slack), then the action; the outcome replaces the message."""
        try:
            who = await self.people.who(user)
            message = await self.actions.steer(who, verb, run_id, via="slack", reason=f"rejected in Slack by {who}")
            reply = {"replace_original": True, "text": f"drpilot {run_id}: {message} (in Slack)"}
        except Stranger as exc:
            reply = {"replace_original": False, "response_type": "ephemeral", "text": f"drpilot {run_id}: {exc}: nothing was done"}
        except (Refused, RunError) as exc:
            reply = {"replace_original": False, "response_type": "ephemeral", "text": f"drpilot {run_id}: refused: {exc}"}
        if reply_to:
            async with httpx.AsyncClient(timeout=10) as client:
                try:
                    await client.post(reply_to, json=reply)
                except httpx.HTTPError as exc:  # the run has its answer; only the message stays as it was
                    self.actions.log.warning("Slack message not updated", run_id=run_id, error=str(exc))

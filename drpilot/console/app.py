"""`drpilot console`: the control room. Pages (home: the runbook board; a run), their live
feeds (Server-Sent Events, one shared poll per thing watched: feed.py), the JSON API the pages
use (actions.py), and the headers that keep it a page of its own: a CSP allowing only its own
script and no framing, no sniffing, no referrer. Every request but /healthz and the script
needs an identity (identity.py); what each may see and do is the policy's (policy.py)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import Any

from slack_sdk.signature import SignatureVerifier
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import (
    FileResponse,
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Route
from temporalio.client import Client

from activities.artifacts.stores import stores_from_settings
from drpilot.console import pages
from drpilot.console.actions import Actions, problem
from drpilot.console.board import Board, one_line
from drpilot.console.drills import DrillsView
from drpilot.console.feed import Feeds
from drpilot.console.identity import IdentitySource
from drpilot.console.policy import Policy
from drpilot.console.slack import SlackInteractions, SlackPeople
from drpilot.frontdoor.runs import RunError

STATIC = Path(__file__).parent / "static"
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'unsafe-inline'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
FEED_SECONDS = 1.0
KEEPALIVE_SECONDS = 15.0


class SecurityHeaders:
    """Pure ASGI (a BaseHTTPMiddleware would buffer the event streams)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        async def with_headers(message):
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = list(message["headers"]) + [(k.lower().encode(), v.encode()) for k, v in HEADERS.items()]
            await send(message)

        await self.app(scope, receive, with_headers if scope["type"] == "http" else send)


@dataclass(eq=False)
class Console:
    board: Board
    actions: Actions
    identity: IdentitySource
    policy: Policy
    feeds: Feeds = field(default_factory=lambda: Feeds(FEED_SECONDS))
    keepalive: float = KEEPALIVE_SECONDS
    slack: SlackInteractions | None = None  # POST /slack/interactions, when a signing secret is given
    drills: DrillsView | None = None

    @classmethod
    def build(cls, connect: Callable[[], Awaitable[Client]], settings, runbooks, dns_weights, identity, policy,
              slack: tuple[str, SlackPeople] | None = None, stores: Callable[[], Any] | None = None) -> Console:
        """`slack`: the signing secret and who Slack's users are (slack.py); `stores`: the object
        stores the drills page reads evidence from (default: S3 and Cloud Storage from the
        console's environment, as `drpilot drill history` reads them)."""
        client: list[Client] = []
        lock = asyncio.Lock()

        async def connected() -> Client:  # one client for the process, made on first use
            async with lock:
                if not client:
                    client.append(await connect())
                return client[0]

        stores = stores or functools.cache(lambda: stores_from_settings(settings))  # one client for every read
        board = Board(connected, settings, runbooks, dns_weights, stores)
        actions = Actions(connected, settings, runbooks, policy, board.progress)
        interactions = SlackInteractions(SignatureVerifier(slack[0]), slack[1], actions) if slack else None
        drills = DrillsView(connected, runbooks, stores)
        return cls(board, actions, identity, policy, slack=interactions, drills=drills)

    # ------------------------------------------------------------------ who
    def _who(self, request: Request) -> str | None:
        return self.identity.who(request)

    def _visible(self, who: str, runbook: str) -> bool:
        return self.policy.refusal(who, "view", runbook) is None

    # ------------------------------------------------------------------ pages
    async def home(self, request: Request, who: str) -> Response:
        startable = [rb for name, rb in sorted(self.board.runbooks.items()) if self.policy.refusal(who, "start", name) is None]
        try:
            rows = pages.board_rows(self._mine(who, await self.board.rows()))
        except Exception as exc:  # Temporal unreachable: the page still comes, saying why
            rows = f'<tr><td colspan="5" class="notready">cannot read the runs: {escape(one_line(exc))}</td></tr>'
        return HTMLResponse(pages.home(who, startable, rows))

    async def run_page(self, request: Request, who: str) -> Response:
        run_id = request.path_params["run_id"]
        try:
            progress = await self.board.progress(run_id)
            if not self._visible(who, progress.runbook):
                return PlainTextResponse(self.policy.refusal(who, "view", progress.runbook) + "\n", status_code=403)
            report = await self.board.report_html(run_id, progress)
        except RunError as exc:
            return PlainTextResponse(f"{exc}\n", status_code=404)
        return HTMLResponse(pages.run_page(who, progress, report))

    async def drills_page(self, request: Request, who: str) -> Response:
        assert self.drills is not None
        visible = [name for name in sorted(self.board.runbooks) if self._visible(who, name)]
        return HTMLResponse(pages.page("drills", who, await self.drills.page(visible)))

    async def drill_file(self, request: Request, who: str, what: str) -> Response:
        assert self.drills is not None
        rb = self.board.runbooks.get(request.path_params["name"])
        if rb is None or not self._visible(who, rb.name):
            return PlainTextResponse(f"no runbook {request.path_params['name']} you may view\n", status_code=404)
        if what == "report":
            return await self.drills.report(rb, request)
        return await self.drills.evidence(rb, request.path_params["key"])

    def _mine(self, who: str, rows: list[dict]) -> list[dict]:
        return [row for row in rows if self._visible(who, row["name"])]

    # ------------------------------------------------------------------ the API
    async def api_runbooks(self, request: Request, who: str) -> Response:
        try:
            return JSONResponse({"runbooks": self._mine(who, await self.board.rows())})
        except Exception as exc:
            return problem(503, f"cannot read the runs: {one_line(exc)}")

    async def api_run(self, request: Request, who: str) -> Response:
        try:
            progress = await self.board.progress(request.path_params["run_id"])
        except RunError as exc:
            return problem(404, str(exc))
        refusal = self.policy.refusal(who, "view", progress.runbook)
        return problem(403, refusal) if refusal else JSONResponse(progress.model_dump(mode="json"))

    # ------------------------------------------------------------------ live feeds
    async def board_events(self, request: Request, who: str) -> Response:
        async def fetch() -> str:
            try:
                return json.dumps({"rows": await self.board.rows()})
            except Exception as exc:
                return json.dumps({"error": f"cannot read the runs: {one_line(exc)}"})

        def shown(value: str) -> str:  # the shared read, cut to what this person may view
            data = json.loads(value)
            if "rows" in data:
                data = {"html": pages.board_rows(self._mine(who, data.pop("rows")))}
            return json.dumps(data)

        return self._stream(request, self.feeds.get("board", fetch).watch(), shown)

    async def run_events(self, request: Request, who: str) -> Response:
        run_id = request.path_params["run_id"]
        try:
            runbook = (await self.board.progress(run_id)).runbook
        except RunError as exc:
            return problem(404, str(exc))
        if not self._visible(who, runbook):
            return problem(403, self.policy.refusal(who, "view", runbook) or "")
        last: dict[str, str] = {}

        async def fetch() -> str:
            if "finished" in last:  # a closed run's query makes a worker replay it: asked once
                return last["finished"]
            try:
                progress = await self.board.progress(run_id)
            except RunError as exc:
                return json.dumps({"error": str(exc)})
            # The history (the report's source) only when the run moved: phases, messages or DNS
            # weights changed (a shift step moves DNS inside its phase: the chart must move with it).
            moved = f"{len(progress.phases)}:{len(progress.messages)}:{progress.state}:{sorted(progress.weights.items())}"
            if last.get("moved") != moved:
                with contextlib.suppress(RunError):
                    last["report"], last["moved"] = await self.board.report_html(run_id, progress), moved
            value = json.dumps({"progress": progress.model_dump(mode="json"), "html": pages.panel(progress),
                                "report": last.get("report", "")})
            if progress.state == "finished" and last.get("moved") == moved:
                last["finished"] = value
            return value

        return self._stream(request, self.feeds.get(f"run:{run_id}", fetch).watch(), lambda value: value)

    def _stream(self, request: Request, values: AsyncIterator[str], shown: Callable[[str], str]) -> Response:
        async def events() -> AsyncIterator[str]:
            # The next value stays one task across keepalives: cancelling it would end the watch.
            upcoming: asyncio.Future[str] | None = None
            try:
                while True:
                    upcoming = upcoming or asyncio.ensure_future(anext(values))
                    done, _ = await asyncio.wait({upcoming}, timeout=self.keepalive)
                    if not done:
                        yield ": keepalive\n\n"
                        continue
                    value, upcoming = upcoming.result(), None
                    yield f"data: {shown(value)}\n\n"
            finally:
                if upcoming is not None:
                    upcoming.cancel()
                    with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                        await upcoming  # the watch's own finally runs before it is closed
                await values.aclose()

        return StreamingResponse(events(), media_type="text/event-stream", headers={"X-Accel-Buffering": "no"})

    # ------------------------------------------------------------------ the app
    def app(self) -> Starlette:
        def person(handler, *extra):
            async def endpoint(request: Request) -> Response:
                who = self._who(request)
                if who is None:
                    return problem(401, f"who are you? the console takes the person from the {self.identity.describe()}")
                return await handler(request, who, *extra)
            return endpoint

        async def healthz(request: Request) -> Response:
            return PlainTextResponse("ok\n")

        async def script(request: Request) -> Response:
            return FileResponse(STATIC / "console.js", media_type="text/javascript")

        routes = [
            Route("/healthz", healthz), Route("/static/console.js", script),
            # {run_id:path}: a drill's runs are DRILL_ID/failover and DRILL_ID/failback.
            Route("/", person(self.home)), Route("/runs/{run_id:path}", person(self.run_page)),
            Route("/events/board", person(self.board_events)), Route("/events/runs/{run_id:path}", person(self.run_events)),
            Route("/api/runbooks", person(self.api_runbooks)), Route("/drills", person(self.drills_page)),
            Route("/drills/{name}/report", person(self.drill_file, "report")),
            Route("/drills/{name}/evidence/{key:path}", person(self.drill_file, "evidence")),
        ]
        routes += [Route(f"/api/runbooks/{{name}}/{action}", person(self.actions.start, action), methods=["POST"])
                   for action in ("failover", "failback", "drill")]
        routes += [Route(f"/api/runs/{{run_id:path}}/{verb}", person(self.actions.control, verb), methods=["POST"])
                   for verb in ("approve", "pause", "resume", "abort")]
        routes.append(Route("/api/runs/{run_id:path}", person(self.api_run)))  # after the actions: the path takes slashes
        if self.slack is not None:  # Slack's signature is its identity: no SSO proxy in the way
            routes.append(Route("/slack/interactions", self.slack.handle, methods=["POST"]))
        return Starlette(routes=routes, middleware=[Middleware(SecurityHeaders)])

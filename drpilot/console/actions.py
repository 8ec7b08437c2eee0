"""What a person may change from the console, and how: through the front door
(drpilot/frontdoor/runs.py), the same start, update and signal the CLI uses, carrying the
person's identity into the run and into a log line.

A state-changing call must carry `X-Drpilot-Action: 1` (a custom header a cross-site form
cannot send), an identity, a policy grant, and stay under the per-identity rate. Starting (a
failover, a failback, a drill: policy verb `start`) and aborting also need the runbook's name
typed back (`"confirm": NAME`). Every refusal is one line, as JSON `{"error": ...}`.
"""

from __future__ import annotations

import json
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse
from structlog.stdlib import BoundLogger
from temporalio.client import Client

from drpilot.console.policy import Policy, Verb
from drpilot.domain.runbook import Runbook
from drpilot.domain.settings import Settings
from drpilot.frontdoor import runs
from drpilot.frontdoor.drills import DrillRefused, drill_input, start_drill
from drpilot.frontdoor.logs import get_logger
from drpilot.frontdoor.runs import RunError
from workflows.types import FailbackInput, FailoverInput, Progress

ACTION_HEADER = "x-drpilot-action"
MAX_BODY = 16 * 1024
# A person acting faster than this is a script or a stuck key: refused until the minute passes.
ACTIONS_PER_MINUTE = 20
# What each operator request needs in the policy: whoever may let a run go on may hold it.
NEEDS: dict[str, Verb] = {"approve": "approve", "pause": "approve", "resume": "approve", "abort": "abort"}


def problem(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


class Refused(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


@dataclass(eq=False)
class RateLimit:
    per_minute: int = ACTIONS_PER_MINUTE
    clock: Callable[[], float] = time.monotonic
    _seen: dict[str, deque[float]] = field(default_factory=dict, init=False)

    def check(self, who: str) -> None:
        now = self.clock()
        seen = self._seen.setdefault(who, deque())
        while seen and now - seen[0] >= 60:
            seen.popleft()
        if len(seen) >= self.per_minute:
            raise Refused(429, f"{who}: more than {self.per_minute} actions in a minute; wait {60 - (now - seen[0]):.0f}s")
        seen.append(now)


@dataclass(eq=False)
class Actions:
    connect: Callable[[], Awaitable[Client]]
    settings: Settings
    runbooks: dict[str, Runbook]
    policy: Policy
    progress: Callable[[str], Awaitable[Progress]]  # a run's progress, RunError when it is none (board.py)
    limit: RateLimit = field(default_factory=RateLimit)
    log: BoundLogger = field(default_factory=lambda: get_logger(component="console"))

    async def start(self, request: Request, who: str, action: str) -> JSONResponse:
        name = request.path_params["name"]
        rb = self.runbooks.get(name)
        if rb is None:
            return problem(404, f"no runbook {name} in the console's --runbooks directory")
        return await self._act(request, who, action, name, None, lambda body: self._start(rb, action, who, body))

    async def control(self, request: Request, who: str, verb: str) -> JSONResponse:
        run_id = request.path_params["run_id"]
        try:
            progress = await self.progress(run_id)
        except RunError as exc:
            return problem(404, str(exc))
        return await self._act(request, who, verb, progress.runbook, run_id, lambda body: self._control(run_id, verb, who, body, progress.runbook))

    async def _act(self, request: Request, who: str, what: str, runbook: str, run_id: str | None, do) -> JSONResponse:
        async def from_the_page() -> dict[str, Any]:
            if request.headers.get(ACTION_HEADER) != "1":
                raise Refused(403, "a state-changing call must carry the header X-Drpilot-Action: 1")
            return await do(await _body(request))

        try:
            return JSONResponse(await self.guarded(who, what, runbook, run_id, from_the_page))
        except Refused as exc:
            return problem(exc.status, str(exc))
        except RunError as exc:  # the run or admission refused (RunRefused too): Temporal's one line
            return problem(409, str(exc))

    async def guarded(self, who: str, what: str, runbook: str, run_id: str | None,
                      do: Callable[[], Awaitable[dict[str, Any]]], via: str = "console") -> dict[str, Any]:
        """`do`, if the policy grants `what` on `runbook` to `who` and they are under the rate;
        a log line either way. Raises Refused or RunError (one line)."""
        log = self.log.bind(identity=who, action=what, runbook=runbook, run_id=run_id, via=via)
        try:
            refusal = self.policy.refusal(who, NEEDS.get(what, "start"), runbook)
            if refusal:
                raise Refused(403, refusal)
            self.limit.check(who)
            answer = await do()
        except (Refused, RunError) as exc:
            log.warning("console action refused", reason=str(exc))
            raise
        log.info("console action", result=answer.get("message") or answer.get("run_id"))
        return answer

    async def steer(self, who: str, verb: str, run_id: str, via: str, reason: str = "operator abort") -> str:
        """An operator request from outside the page (a Slack button): the same policy, rate,
        update and log line; the caller vouches for the person (a verified Slack signature)."""
        progress = await self.progress(run_id)

        async def send() -> dict[str, Any]:
            answer = await runs.control(await self.connect(), run_id, verb, by=who, reason=reason)
            return {"message": answer.message}

        return (await self.guarded(who, verb, progress.runbook, run_id, send, via))["message"]

    async def _start(self, rb: Runbook, action: str, who: str, body: dict[str, Any]) -> dict[str, Any]:
        _confirmed(body, rb.name)
        if action == "drill":
            return await self._drill(rb, who, body)
        common = {"runbook": rb, "trigger": "console", "requested_by": who, "speed": self.settings.speed,
                  "reason": str(body.get("reason") or f"started from the console by {who}")}
        try:
            if action == "failover":
                _region(rb, body.get("from"), "from")
                request: FailoverInput | FailbackInput = FailoverInput(
                    failed_region=body["from"], target_regions=body.get("to") or None,
                    strategy=body.get("strategy") or "graceful", **common,
                )
            else:
                _region(rb, body.get("to"), "to")
                request = FailbackInput(original_region=body["to"], **common)
        except ValidationError as exc:
            first = exc.errors()[0]
            raise Refused(400, f"{'.'.join(map(str, first['loc']))}: {first['msg']}") from None
        started = await runs.start(await self.connect(), self.settings, request)
        return {"run_id": started.handle.id, "attached": started.attached}

    async def _drill(self, rb: Runbook, who: str, body: dict[str, Any]) -> dict[str, Any]:
        """A drill, as `drpilot drill run` starts it (its mode by default a rehearsal, from the primary)."""
        try:
            request = drill_input(rb, self.settings, from_region=body.get("from") or None, mode=body.get("mode") or "rehearsal",
                                  speed=self.settings.speed, requested_by=who)
        except DrillRefused as exc:
            raise Refused(400, str(exc)) from None
        return {"run_id": (await start_drill(await self.connect(), self.settings, request)).id, "attached": False}

    async def _control(self, run_id: str, verb: str, who: str, body: dict[str, Any], runbook: str) -> dict[str, Any]:
        if verb == "abort":
            _confirmed(body, runbook)
        answer = await runs.control(await self.connect(), run_id, verb, by=who)
        return {"run_id": run_id, "phase": answer.phase, "message": answer.message, "weights": answer.weights}


def _confirmed(body: dict[str, Any], name: str) -> None:
    if body.get("confirm") != name:
        raise Refused(400, f'type the runbook\'s name to confirm: send "confirm": "{name}"')


def _region(rb: Runbook, value: Any, key: str) -> None:
    if value not in rb.spec.regions:
        raise Refused(400, f'"{key}" must be one of the regions of {rb.name}: {", ".join(sorted(rb.spec.regions))}')


async def _body(request: Request) -> dict[str, Any]:
    raw = bytearray()
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_BODY:
            raise Refused(413, f"body over {MAX_BODY} bytes")
    if not raw.strip():
        return {}
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        raise Refused(400, "the body is not JSON") from None
    if not isinstance(data, dict):
        raise Refused(400, "the body must be a JSON object")
    return data

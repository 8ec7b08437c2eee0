"""The receiver of a runbook's http blocks (spec.blocks, kind http): a stand-in for the
user's feature-flag service, ticketing API or queue admin, on 127.0.0.1, that records
every request it got.

It honours `Idempotency-Key` as the IETF httpapi draft "The Idempotency-Key HTTP Header
Field" describes and payment APIs (Stripe, Adyen) behave: the first request with a key
has its effect and its answer is stored; a later request with the same key has no second
effect and gets the stored answer again. A request without the header is refused with 400,
as the draft lets a resource that requires it do. So the tests, and a sandbox user, can see
that a block retried (a lost answer, a worker killed mid-request) had one effect.

Fault `http_fails=BLOCK[,BLOCK]`: requests of those blocks are answered 503 Service
Unavailable with no effect (the receiver's own dependency is down), for as long as the
fault is set. A block is told by its Idempotency-Key, which drpilot forms as
`drpilot/<workflow id>/<run id>/<block>` (its undo: `.../<block>/undo`).

    GET /_sandbox/received   {"deliveries": [...], "effects": [...]}
"""

from __future__ import annotations

import json
import threading
from dataclasses import asdict, dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from drpilot_twin.faults import FaultBoard
from drpilot_twin.loopback import LoopbackServer

KEY = "Idempotency-Key"


def block_of(key: str) -> str:
    """The block a drpilot Idempotency-Key names ("" when it is not one of drpilot's)."""
    parts = key.split("/")
    if parts and parts[-1] == "undo":
        parts = parts[:-1]
    return parts[-1] if len(parts) >= 4 and parts[0] == "drpilot" else ""


@dataclass
class Delivery:
    method: str
    path: str
    key: str
    block: str
    body: Any
    headers: list[str]  # the names of the headers it carried (a token's value is not kept)
    status: int


@dataclass
class Received:
    deliveries: list[Delivery] = field(default_factory=list)
    effects: list[Delivery] = field(default_factory=list)  # one per key that had its effect
    answers: dict[str, tuple[int, dict[str, Any]]] = field(default_factory=dict)  # key -> stored answer


class HttpReceiver:
    def __init__(self, board: FaultBoard):
        self.board = board
        self.received = Received()
        self._lock = threading.Lock()
        app = Starlette(routes=[
            Route("/_sandbox/received", self._show, methods=["GET"]),
            # The twin's own prefix: never a block's effect (a request sent there is a mistake).
            Route("/_sandbox/{rest:path}", self._not_found, methods=["GET", "POST", "PUT", "PATCH", "DELETE"]),
            Route("/{path:path}", self._receive, methods=["GET", "POST", "PUT", "PATCH", "DELETE"]),
        ])
        self.server = LoopbackServer(app, name="sandbox-http-receiver")

    @property
    def url(self) -> str:
        return self.server.url

    def start(self) -> None:
        self.server.start()

    def forget(self) -> None:
        """Nothing received (Twin.reset between tests sharing one twin)."""
        with self._lock:
            self.received = Received()

    def stop(self) -> None:
        self.server.stop()

    async def _receive(self, request: Request) -> Response:
        raw = await request.body()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode(errors="replace")
        key = request.headers.get(KEY, "")
        block = block_of(key)
        with self._lock:
            if not key:
                status, answer = 400, {"error": f"{KEY} header required"}
            elif block and block in self.board.now.http_fails:
                status, answer = 503, {"error": f"http_fails: {block}"}
            elif key in self.received.answers:
                status, answer = self.received.answers[key]
            else:
                status, answer = 200, {"ok": True, "effect": len(self.received.effects) + 1}
            delivery = Delivery(
                method=request.method, path=request.url.path, key=key, block=block, body=body,
                headers=sorted(h for h in request.headers if h.lower() not in ("host", "content-length")), status=status,
            )
            self.received.deliveries.append(delivery)
            if status == 200 and key not in self.received.answers:
                self.received.effects.append(delivery)
                self.received.answers[key] = (status, answer)
        return JSONResponse(answer, status_code=status)

    async def _not_found(self, request: Request) -> Response:
        return JSONResponse({"error": f"{request.method} {request.url.path}: not a receiver path"}, status_code=404)

    async def _show(self, request: Request) -> Response:
        with self._lock:
            data = {
                "deliveries": [asdict(d) for d in self.received.deliveries],
                "effects": [asdict(d) for d in self.received.effects],
            }
        return JSONResponse(data)

"""Route 53 Application Recovery Controller for the twin: one cluster of five regional
endpoints holding routing controls, assertion safety rules and the Route 53 health checks
tied to the controls. moto has no such service.

What is modelled, from AWS's Routing control API reference (API_UpdateRoutingControlStates
and friends) and the ARC developer guide:

* The data plane is a cluster of five regional endpoints, each answering the same state
  (the cluster replicates it). A client tries them in turn: any endpoint may answer
  EndpointTemporarilyUnavailableException (503) or ThrottlingException (429). The fault
  `arc_endpoints_down=N` makes the first N endpoints answer 503
  EndpointTemporarilyUnavailableException.
* Four operations over AWS's JSON 1.0 protocol (X-Amz-Target ToggleCustomerAPI.*):
  GetRoutingControlState, UpdateRoutingControlState, UpdateRoutingControlStates,
  ListRoutingControls. States are "On" / "Off".
* An update is applied only when, in the state it would leave, every assertion safety
  rule holds ("at least N of these controls On"); else 409 ConflictException naming the
  rule, unless the rule's ARN is in SafetyRulesToOverride (the break-glass).
  UpdateRoutingControlStates applies all its entries together or none.
* A health check of type RECOVERY_CONTROL is healthy exactly while its control is On; a
  record set carrying it leaves DNS answers when the control goes Off. moto keeps such health
  checks but drops their RoutingControlArn and chooses their ids, so the twin holds the
  tie (health check id -> control) here, with the runbook's ids.

It counts what it saw (accepted updates and actual state changes) so tests can prove an
update made twice had one effect.
"""

from __future__ import annotations

import json
import threading
import uuid
from dataclasses import dataclass, field

from starlette.requests import Request
from starlette.responses import Response

from drpilot.domain.runbook import Runbook
from drpilot_twin.faults import FaultBoard
from drpilot_twin.loopback import LoopbackServer

# An ARC cluster always has five regional endpoints.
ENDPOINTS = 5
TARGET_PREFIX = "ToggleCustomerAPI."
STATES = ("On", "Off")
# ListRoutingControls pages: AWS's default page size is not documented; small pages make
# a client that ignores NextToken visible.
PAGE = 5


@dataclass
class Control:
    arn: str
    name: str
    panel_arn: str
    state: str = "On"


@dataclass(frozen=True)
class AssertionRule:
    """At least `min_on` of `controls` must be On after any update."""

    arn: str
    name: str
    controls: tuple[str, ...]
    min_on: int = 1


@dataclass
class ArcLog:
    updates: int = 0  # update calls the cluster accepted
    transitions: list[tuple[str, str]] = field(default_factory=list)  # (control ARN, new state), each an effect
    refused: list[str] = field(default_factory=list)  # names of the rules that refused an update


class ArcError(Exception):
    def __init__(self, status: int, code: str, message: str, **fields: object):
        super().__init__(message)
        self.status, self.code, self.message, self.fields = status, code, message, fields


class ArcCluster:
    """The cluster's state and its five endpoints on 127.0.0.1 (module doc)."""

    def __init__(self, board: FaultBoard, owner: str = "111122223333"):
        self.board = board
        self.owner = owner
        self.controls: dict[str, Control] = {}
        self.rules: dict[str, AssertionRule] = {}
        self.health_checks: dict[str, str] = {}  # health check id -> control ARN
        self.log = ArcLog()
        self._lock = threading.Lock()
        self._servers = [
            LoopbackServer(self._app(index), name=f"arc-endpoint-{index}", lifespan="off") for index in range(ENDPOINTS)
        ]

    # ------------------------------------------------------------------ lifecycle
    @property
    def urls(self) -> list[str]:
        """The five endpoints in the cluster's order (`arc_endpoints_down=N` fails the first N)."""
        return [server.url + "/v1" for server in self._servers]

    def start(self) -> None:
        for server in self._servers:
            server.start()

    def stop(self) -> None:
        for server in self._servers:
            server.stop()

    # ------------------------------------------------------------------ what it holds
    def add_control(self, arn: str, *, name: str | None = None, state: str = "On", health_check: str | None = None) -> None:
        panel = arn.split("/routingcontrol/", 1)[0]
        with self._lock:
            self.controls[arn] = Control(arn, name or arn.rsplit("/", 1)[-1], panel, state)
            if health_check:
                self.health_checks[health_check] = arn

    def add_rule(self, rule: AssertionRule) -> None:
        with self._lock:
            self.rules[rule.arn] = rule

    def state(self, arn: str) -> str:
        with self._lock:
            return self.controls[arn].state

    def set_states(self, states: dict[str, str]) -> None:
        """The twin's own hand (a reset, a test staging a situation): no rule, no log."""
        with self._lock:
            for arn, state in states.items():
                self.controls[arn].state = state

    def healthy(self, health_check: str | None) -> bool:
        """Route 53's view of a record's health check: a RECOVERY_CONTROL check is healthy
        while its control is On; a record without a health check is always healthy."""
        if not health_check:
            return True
        with self._lock:
            arn = self.health_checks.get(health_check)
            # A health check the cluster does not know is not a recovery control: healthy, as
            # moto reports every other health check.
            return arn is None or self.controls[arn].state == "On"

    # ------------------------------------------------------------------ the wire
    def _app(self, index: int):
        async def app(scope, receive, send) -> None:
            request = Request(scope, receive)
            response = self._answer(index, request.headers.get("x-amz-target", ""), await request.body())
            await response(scope, receive, send)

        return app

    def _answer(self, index: int, target: str, body: bytes) -> Response:
        try:
            if index < self.board.now.arc_endpoints_down:
                raise ArcError(503, "EndpointTemporarilyUnavailableException",
                               "The cluster endpoint isn't available. Try another cluster endpoint.")
            if not target.startswith(TARGET_PREFIX):
                raise ArcError(400, "UnknownOperationException", f"unknown target {target!r}")
            try:
                payload = json.loads(body or b"{}")
            except ValueError:
                raise ArcError(400, "SerializationException", "the request body is not JSON") from None
            operation = target[len(TARGET_PREFIX):]
            handler = {
                "GetRoutingControlState": self._get,
                "UpdateRoutingControlState": self._update_one,
                "UpdateRoutingControlStates": self._update_many,
                "ListRoutingControls": self._list,
            }.get(operation)
            if handler is None:
                raise ArcError(400, "UnknownOperationException", f"unknown operation {operation}")
            reply = handler(payload)
        except ArcError as error:
            return _error(error)
        return Response(json.dumps(reply), 200, media_type="application/x-amz-json-1.0",
                        headers={"x-amzn-RequestId": str(uuid.uuid4())})

    def _control(self, arn: object) -> Control:
        if not isinstance(arn, str) or not arn:
            raise ArcError(400, "ValidationException", "RoutingControlArn is required", reason="fieldValidationFailed")
        control = self.controls.get(arn)
        if control is None:
            raise ArcError(404, "ResourceNotFoundException", f"Routing control {arn} not found",
                           resourceId=arn, resourceType="RoutingControl")
        return control

    def _get(self, payload: dict) -> dict:
        with self._lock:
            control = self._control(payload.get("RoutingControlArn"))
            return {"RoutingControlArn": control.arn, "RoutingControlState": control.state,
                    "RoutingControlName": control.name}

    def _update_one(self, payload: dict) -> dict:
        entry = {k: payload.get(k) for k in ("RoutingControlArn", "RoutingControlState")}
        return self._apply([entry], payload.get("SafetyRulesToOverride") or [])

    def _update_many(self, payload: dict) -> dict:
        entries = payload.get("UpdateRoutingControlStateEntries")
        if not isinstance(entries, list) or not entries:
            raise ArcError(400, "ValidationException", "UpdateRoutingControlStateEntries is required",
                           reason="fieldValidationFailed")
        return self._apply(entries, payload.get("SafetyRulesToOverride") or [])

    def _apply(self, entries: list[dict], overrides: list[str]) -> dict:
        with self._lock:
            wanted: dict[str, str] = {}
            for entry in entries:
                control = self._control(entry.get("RoutingControlArn"))
                state = entry.get("RoutingControlState")
                if state not in STATES:
                    raise ArcError(400, "ValidationException", f"RoutingControlState must be On or Off, got {state!r}",
                                   reason="fieldValidationFailed")
                wanted[control.arn] = state
            after = {arn: wanted.get(arn, c.state) for arn, c in self.controls.items()}
            for rule in self.rules.values():
                on = sum(1 for arn in rule.controls if after.get(arn) == "On")
                if on < rule.min_on and rule.arn not in overrides:
                    self.log.refused.append(rule.name)
                    raise ArcError(
                        409, "ConflictException",
                        f"The update violates safety rule {rule.name} ({rule.arn}): at least {rule.min_on} of its "
                        f"routing controls must be On, and {on} would be",
                        resourceId=rule.arn, resourceType="SafetyRule",
                    )
            self.log.updates += 1
            for arn, state in wanted.items():
                if self.controls[arn].state != state:
                    self.controls[arn].state = state
                    self.log.transitions.append((arn, state))
        return {}

    def _list(self, payload: dict) -> dict:
        panel = payload.get("ControlPanelArn")
        start = int(payload.get("NextToken") or 0)
        size = int(payload.get("MaxResults") or PAGE)
        with self._lock:
            listed = [c for c in self.controls.values() if panel in (None, c.panel_arn)]
            page = listed[start:start + size]
            reply: dict = {"RoutingControls": [
                {"ControlPanelArn": c.panel_arn, "ControlPanelName": c.panel_arn.rsplit("/", 1)[-1],
                 "RoutingControlArn": c.arn, "RoutingControlName": c.name, "RoutingControlState": c.state,
                 "Owner": self.owner}
                for c in page
            ]}
        if start + size < len(listed):
            reply["NextToken"] = str(start + size)
        return reply


def _error(error: ArcError) -> Response:
    """AWS's JSON protocol error: the type in `__type` and x-amzn-ErrorType, its members beside."""
    body = {"__type": error.code, "message": error.message, **error.fields}
    return Response(json.dumps(body), error.status, media_type="application/x-amz-json-1.0",
                    headers={"x-amzn-ErrorType": error.code, "x-amzn-RequestId": str(uuid.uuid4())})


def seed_arc(cluster: ArcCluster, runbook: Runbook) -> None:
    """The runbook's routing controls (On: the normal layout) with their health checks, and
    one assertion rule per safety rule the runbook names: at least one of its controls On."""
    arc = runbook.spec.dns.routing_controls
    if arc is None:
        return
    for region, control in arc.controls.items():
        cluster.add_control(control.arn, name=f"{runbook.name}-{region}", health_check=control.health_check)
    arns = tuple(c.arn for c in arc.controls.values())
    for name, rule_arn in arc.safety_rules.items():
        cluster.add_rule(AssertionRule(rule_arn, name, arns, 1))


def normal_states(runbook: Runbook) -> dict[str, str]:
    arc = runbook.spec.dns.routing_controls
    return {c.arn: "On" for c in arc.controls.values()} if arc else {}

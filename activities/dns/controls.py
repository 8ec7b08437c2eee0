"""Route 53 ARC routing controls: the switch that needs only ARC's data plane.

A runbook with `spec.dns.switch: routing_controls` names, per region, a routing control and
the Route 53 health check tied to it (type RECOVERY_CONTROL); every record set of the region
carries that health check. Turning a control Off makes its records unhealthy, and Route 53
leaves them out of its answers with no Route 53 API call at all. What DNS answers is then
the records' weights times the controls (`answered`).

The controls live in a cluster of five regional endpoints. Each call tries them in turn, as
AWS's own examples do, moving on at EndpointTemporarilyUnavailable, throttling, 5xx and
timeouts; only when every endpoint failed is the call retryable as a whole. An update a
safety rule refuses (ConflictException) is reported by the rule's name and is not retried:
`--override-safety-rule NAME` is the break-glass.

Setting a control's state is naturally idempotent: On twice is On. So an update made
again (a retry after a lost worker) has one effect, and a retry that finds the states in
place makes no call at all.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import boto3
import botocore.exceptions
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.contracts import ErrorType
from activities.credentials import aws_config
from drpilot.domain.runbook import ClusterEndpoint, RoutingControls, Runbook, split_weights
from drpilot.domain.settings import Settings

ON, OFF = "On", "Off"
# AWS's Routing control API reference: calls go to one of the cluster's regional endpoints
# and are made "in the US West (Oregon) Region" (`--region us-west-2`), whichever endpoint.
SIGNING_REGION = "us-west-2"
# A dark endpoint must not hold the switch up: the next one is tried after this long.
CONNECT_SECONDS = 2.0
READ_SECONDS = 5.0
# Moving on to the next endpoint, never retrying the same one (AWS's examples do the same).
_NEXT_ENDPOINT = {
    "EndpointTemporarilyUnavailableException",
    "ThrottlingException",
    "InternalServerException",
    "ServiceUnavailable",
}


def answered(weights: Mapping[str, int], on: Mapping[str, bool]) -> dict[str, int]:
    """The share of answers (summing to 100) Route 53 gives each region, from the records'
    weights and whether each region's health check is healthy (its control On). Per
    Route 53's "How Amazon Route 53 chooses records when health checking is configured":
    healthy records with a weight above 0 by weight; if none, the healthy zero-weight ones
    equally; if none is healthy, all of them as if healthy."""
    regions = list(weights)
    chosen: dict[str, float] = {r: w for r, w in weights.items() if w > 0 and on.get(r, True)}
    if not chosen:
        chosen = {r: 1 for r, w in weights.items() if w == 0 and on.get(r, True)}
    if not chosen:
        chosen = {r: w for r, w in weights.items() if w > 0} or dict.fromkeys(regions, 1)
    return split_weights(chosen, dict.fromkeys(regions, 0))


def serving(weights: Mapping[str, int]) -> set[str]:
    return {r for r, w in weights.items() if w > 0}


class RoutingControlSwitch:
    """Reads and sets a runbook's routing controls through its cluster's endpoints."""

    def __init__(self, settings: Settings | None = None, client: Callable[[str, str], Any] | None = None):
        self._map = dict((settings or Settings()).providers.arc_endpoint_map)
        self._client = client or _client
        self._clients: dict[tuple[str, str], Any] = {}

    def states(self, runbook: Runbook) -> dict[str, str]:
        """Region -> On / Off, one GetRoutingControlState per control."""
        arc = _arc(runbook)
        return {
            region: self._each(
                runbook, f"read {region}'s routing control",
                lambda client, arn=control.arn: client.get_routing_control_state(RoutingControlArn=arn),
            )["RoutingControlState"]
            for region, control in arc.controls.items()
        }

    def update(self, runbook: Runbook, states: Mapping[str, str], overrides: list[str] = ()) -> None:
        """Every state in `states` (region -> On / Off) in ONE UpdateRoutingControlStates, so
        an assertion rule judges the targets On and the failed region Off together."""
        arc = _arc(runbook)
        entries = [
            {"RoutingControlArn": arc.controls[region].arn, "RoutingControlState": state}
            for region, state in states.items()
        ]
        rules = [arc.safety_rules.get(name, name) for name in overrides]
        summary = " ".join(f"{region}={state}" for region, state in states.items())
        self._each(
            runbook, f"set routing controls {summary}",
            lambda client: client.update_routing_control_states(
                UpdateRoutingControlStateEntries=entries, SafetyRulesToOverride=rules
            ),
        )

    def listed(self, runbook: Runbook) -> tuple[dict[str, str], list[str], list[str]]:
        """Readiness: each endpoint asked on its own for every control of the runbook's panel
        (ListRoutingControls, all pages). (ARN -> state as the first answering endpoint
        lists it, regions of the endpoints that answered, "region: why" of the others)."""
        arc = _arc(runbook)
        found: dict[str, str] | None = None
        answering, failing = [], []
        for endpoint in arc.cluster_endpoints:
            try:
                listing = self._listing(runbook, [endpoint])
            except ApplicationError as exc:
                failing.append(f"{endpoint.region}: {exc.message}")
                continue
            answering.append(endpoint.region)
            found = listing if found is None else found
        return found or {}, answering, failing

    def _listing(self, runbook: Runbook, endpoints: list[ClusterEndpoint]) -> dict[str, str]:
        arc = _arc(runbook)
        found: dict[str, str] = {}
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"ControlPanelArn": arc.control_panel} if arc.control_panel else {}
            if token:
                kwargs["NextToken"] = token
            reply = self._each(
                runbook, "list routing controls", lambda client, kw=kwargs: client.list_routing_controls(**kw), endpoints
            )
            found.update({c["RoutingControlArn"]: c["RoutingControlState"] for c in reply.get("RoutingControls", [])})
            token = reply.get("NextToken")
            if not token:
                return found

    # ------------------------------------------------------------------ the endpoints
    def _each(
        self, runbook: Runbook, doing: str, call: Callable[[Any], Any], endpoints: list[ClusterEndpoint] | None = None
    ) -> Any:
        """`call` on the first endpoint (of the cluster's, or `endpoints`) that answers; the
        refusals no endpoint can change are raised at once (non-retryable)."""
        failures = []
        for endpoint in endpoints or _arc(runbook).cluster_endpoints:
            url = self._map.get(endpoint.url.rstrip("/"), endpoint.url)
            key = (url, SIGNING_REGION)
            if key not in self._clients:
                self._clients[key] = self._client(url, SIGNING_REGION)
            try:
                return call(self._clients[key])
            except botocore.exceptions.ClientError as exc:
                error = exc.response.get("Error", {})
                code = error.get("Code", "Unknown")
                status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
                if code in _NEXT_ENDPOINT or status >= 500:
                    failures.append(f"{endpoint.region}: {code}")
                    _log("ARC endpoint %s (%s) did not answer: %s; trying the next", endpoint.url, endpoint.region, code)
                    continue
                raise _refusal(runbook, doing, exc) from exc
            except (botocore.exceptions.EndpointConnectionError, botocore.exceptions.ConnectTimeoutError,
                    botocore.exceptions.ReadTimeoutError, botocore.exceptions.ConnectionClosedError) as exc:
                failures.append(f"{endpoint.region}: {type(exc).__name__}")
                _log("ARC endpoint %s (%s) unreachable: %s; trying the next", endpoint.url, endpoint.region, exc)
            except botocore.exceptions.NoCredentialsError as exc:
                raise ApplicationError(
                    f"no AWS credentials to {doing}: give the worker an AWS role or AWS_* credentials",
                    type=ErrorType.ROUTE53_NO_CREDENTIALS, non_retryable=True,
                ) from exc
        raise ApplicationError(
            f"no Route 53 ARC cluster endpoint answered while trying to {doing} "
            f"({'; '.join(failures)}); retrying every endpoint with backoff",
            type=ErrorType.DNS_CONTROLS_UNAVAILABLE,
        )


def _arc(runbook: Runbook) -> RoutingControls:
    arc = runbook.spec.dns.routing_controls
    if arc is None:  # the runbook model guarantees it for switch: routing_controls
        raise ApplicationError(
            f"runbook {runbook.name} names no spec.dns.routing_controls", type=ErrorType.DNS_CONTROLS_REFUSED,
            non_retryable=True,
        )
    return arc


def _refusal(runbook: Runbook, doing: str, exc: botocore.exceptions.ClientError) -> ApplicationError:
    error = exc.response.get("Error", {})
    code, message = error.get("Code", "Unknown"), error.get("Message", str(exc))
    if code == "ConflictException":
        rule = _rule_name(runbook, exc.response.get("resourceId", ""), message)
        return ApplicationError(
            f"safety rule {rule} refused to {doing}: {message}. If this is the break-glass moment, run again "
            f"with --override-safety-rule {rule}",
            {"rule": rule}, type=ErrorType.DNS_SAFETY_RULE, non_retryable=True,
        )
    fixes = {
        "AccessDeniedException": "grant the worker's AWS role route53-recovery-cluster:GetRoutingControlState, "
        "UpdateRoutingControlState, UpdateRoutingControlStates and ListRoutingControls",
        "ResourceNotFoundException": "check the ARNs in spec.dns.routing_controls against "
        "`aws route53-recovery-control-config list-routing-controls`",
        "ValidationException": "check spec.dns.routing_controls",
    }
    return ApplicationError(
        f"Route 53 ARC refused to {doing}: {code}: {message}. Fix: {fixes.get(code, 'see the message')}",
        type=ErrorType.DNS_CONTROLS_REFUSED, non_retryable=True,
    )


def _rule_name(runbook: Runbook, resource: str, message: str) -> str:
    """The runbook's name for the rule that refused (by its ARN), else the ARN itself."""
    rules = _arc(runbook).safety_rules
    for name, arn in rules.items():
        if arn in (resource, *message.split()) or arn in message:
            return name
    return resource or "unknown"


def _client(url: str, region: str):
    # One try per endpoint: the next endpoint is the retry.
    config = aws_config(read_timeout=READ_SECONDS, attempts=1, connect_timeout=CONNECT_SECONDS)
    return boto3.session.Session().client("route53-recovery-cluster", endpoint_url=url, region_name=region, config=config)


def _log(message: str, *args: Any) -> None:
    if activity.in_activity():
        activity.logger.warning(message, *args)

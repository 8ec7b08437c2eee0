"""What the webhook does with one alert, and why: the guardrails between an alert and a run.

In order, each a decision with its reason:
  resolved                 -> never starts anything; recorded
  no rule matches          -> unmatched
  region label missing or not one of the runbook's regions -> refused
  fired for less than the rule's `for` -> held (Alertmanager's next notification decides again)
  guardrails.auto_failover false -> notify-only
  kill switch engaged      -> notify-only
  the same request's run known active in this process -> attached, without asking Temporal
  then one admission update (AdmissionWorkflow.claim_guarded, concurrent alerts together):
    a run of the runbook active -> attached (same request) or refused (another one)
    otherwise: cooldown after the runbook's last run ended, circuit breaker (both held by
    admission, so every webhook replica shares them), never the only region serving (live
    DNS, read before) -> notify-only / refused; else admitted, and the run started.

A notify-only decision starts nothing: Alertmanager's route keeps paging people
(`continue: true` in infra/alertmanager/alertmanager.yml), who can start the run by hand.
"""

from __future__ import annotations

import asyncio
import collections
import os
import threading
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import KW_ONLY, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from activities.contracts import Admission, Breaker, GuardedClaim, GuardedClaims
from drpilot.domain.durations import format_duration
from drpilot.domain.runbook import ApprovalPolicy, Runbook
from drpilot.domain.settings import Settings
from drpilot.frontdoor import runs
from drpilot.frontdoor.logs import get_logger
from drpilot.webhook.intake import ActiveRuns, Admitter
from drpilot.webhook.payload import Alert
from drpilot.webhook.rules import Route, Routing
from workflows import admission
from workflows.types import AdmissionState, AlertResolved, FailoverInput

if TYPE_CHECKING:
    from activities.dns.activities import DnsActivities

KILL_SWITCH_ENV = "DRPILOT_WEBHOOK_KILL_SWITCH"
# How long the admission state may take to answer before the worker counts as unreachable.
ADMISSION_QUERY_SECONDS = 10.0

DnsWeights = Callable[[Runbook], Awaitable[dict[str, int]]]
Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Decision:
    outcome: str  # started, attached, refused, notify-only, held, resolved, unmatched
    reason: str = ""
    rule: str | None = None
    runbook: str | None = None
    region: str | None = None
    run_id: str | None = None
    # Why it started nothing, in one word for metrics: cooldown, circuit_breaker, ...
    code: str = ""

    def line(self) -> str:
        if self.outcome in ("started", "attached"):
            return f"{self.outcome} {self.run_id}"
        return f"{self.outcome}: {self.reason}"


class Unavailable(RuntimeError):
    """Temporal or the worker did not answer: the webhook answers 503 so Alertmanager retries."""


class KillSwitch:
    """Engaged by DRPILOT_WEBHOOK_KILL_SWITCH=1 or by a file existing: every alert that
    would start a run is notify-only. Read at every alert, so engaging it needs no restart."""

    def __init__(self, file: Path | None = None, env: dict[str, str] | None = None):
        self.file = file
        self.env = os.environ if env is None else env

    def engaged(self) -> str | None:
        if self.env.get(KILL_SWITCH_ENV, "").strip().lower() in ("1", "true", "yes", "on"):
            return f"kill switch engaged ({KILL_SWITCH_ENV}={self.env[KILL_SWITCH_ENV]}); unset it to let alerts start runs"
        if self.file is not None and self.file.exists():
            return f"kill switch engaged (file {self.file} exists); remove it to let alerts start runs"
        return None


@dataclass(eq=False)
class Guardrails:
    routing: Routing
    client: Client
    settings: Settings
    dns_weights: DnsWeights
    _: KW_ONLY
    kill_switch: KillSwitch = field(default_factory=KillSwitch)
    clock: Clock = utc_now
    # One decision at a time per runbook: a storm's duplicates then find the first one's run
    # known active here (or held at admission) and attach, without a round trip each.
    _locks: dict[str, asyncio.Lock] = field(init=False, default_factory=lambda: collections.defaultdict(asyncio.Lock))
    _next: dict[tuple[str, ...], asyncio.Future[Decision]] = field(init=False, default_factory=dict)
    admitter: Admitter = field(init=False)
    active: ActiveRuns = field(init=False)

    def __post_init__(self) -> None:
        breaker = Breaker(max_runs=self.routing.breaker.max_runs, window=self.routing.breaker.window)

        async def send(claims: list[GuardedClaim]) -> list[Admission]:
            try:
                batch = GuardedClaims(claims=claims, breaker=breaker, at=self.clock())
                return await runs.claim_guarded(self.client, self.settings, batch)
            except runs.RunError as exc:
                raise Unavailable(str(exc)) from None

        self.admitter = Admitter(send)
        self.active = ActiveRuns(self.client)

    async def aclose(self) -> None:
        await self.active.aclose()

    async def decide(self, alert: Alert, receiver: str) -> Decision:
        route = self.routing.route(alert.labels)
        if alert.status == "resolved":
            return await self._resolved(alert, receiver, route)
        if route is None:
            return Decision("unmatched", f"no rule matches alert {alert.name or '(no alertname)'}", code="unmatched")
        rule, rb = route.rule, route.runbook
        base = {"rule": rule.name, "runbook": rb.name}
        region = alert.labels.get(rule.region_label, "")
        if region not in rb.regions:
            has = ", ".join(rb.regions)
            reason = (
                f"label {rule.region_label}={region!r} names no region of runbook {rb.name} (it has {has})" if region
                else f"the alert has no label {rule.region_label}, which rule {rule.name} reads the failed region "
                f"from (runbook {rb.name} has {has})"
            )
            return Decision("refused", reason, code="unknown_region", **base)
        base["region"] = region
        fired = self.clock() - alert.startsAt
        if fired < rule.for_:
            return Decision(
                "held",
                f"firing for {format_duration(max(fired, timedelta(0)))}, rule {rule.name} needs {format_duration(rule.for_)} "
                "before it starts a run; the next notification decides again",
                code="firing_too_short", **base,
            )
        if not rb.spec.guardrails.auto_failover:
            return Decision(
                "notify-only",
                f"runbook {rb.name} sets guardrails.auto_failover: false; a person starts it with "
                f"`drpilot failover RUNBOOK --from {region}`",
                code="auto_failover_off", **base,
            )
        killed = self.kill_switch.engaged()
        if killed:
            return Decision("notify-only", killed, code="kill_switch", **base)
        return await self._once((rb.name, region, rule.name, receiver), lambda: self._start(alert, receiver, route, region, base))

    async def _once(self, key: tuple[str, ...], decide: Callable[[], Awaitable[Decision]]) -> Decision:
        """Alerts asking for the same run while a decision about it is being made wait for
        the next one and share it: a storm of duplicates costs two admission round trips,
        not one each. The shared decision starts after every sharer arrived, so it is as
        fresh as one of their own; a sharer of a start is a duplicate, so it attached."""
        batch = self._next.get(key)
        if batch is not None:
            decision = await asyncio.shield(batch)
            return replace(decision, outcome="attached") if decision.outcome == "started" else decision
        batch = asyncio.get_running_loop().create_future()
        batch.add_done_callback(lambda f: f.cancelled() or f.exception())  # retrieved: no warning
        self._next[key] = batch
        try:
            async with self._locks[key[0]]:
                del self._next[key]  # arrivals from now on wait for the decision after this one
                decision = await decide()
        except BaseException as exc:
            if not batch.done():
                batch.set_exception(exc if isinstance(exc, Exception) else Unavailable("decision cancelled"))
            raise
        batch.set_result(decision)
        return decision

    async def _resolved(self, alert: Alert, receiver: str, route: Route | None) -> Decision:
        if route is None:
            return Decision("resolved", f"recorded; no rule matches alert {alert.name or '(no alertname)'}")
        rb = route.runbook
        ends = alert.endsAt.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ") if alert.endsAt else "now"
        base = {"rule": route.rule.name, "runbook": rb.name, "region": alert.labels.get(route.rule.region_label) or None}
        never = "a resolved alert never starts or stops a run"
        # A run this process started or attached to needs no admission round trip.
        run_id = self.active.of_runbook(rb.name)
        if run_id is None:
            try:
                holders = [h for h in (await self._admission_state()).holders if h.claim.runbook == rb.name]
            except Unavailable as exc:
                return Decision("resolved", f"recorded here only (ended {ends}; {exc}); {never}", **base)
            if not holders:
                return Decision("resolved", f"recorded (ended {ends}); no run of {rb.name} is active; {never}", **base)
            run_id = holders[0].claim.run_id
        resolved = AlertResolved(name=alert.name, fingerprint=alert.fingerprint, ends_at=alert.endsAt, receiver=receiver)
        try:
            await self.client.get_workflow_handle(run_id).signal("alert_resolved", resolved)
        except RPCError as exc:  # the run ended between the read and the signal
            return Decision("resolved", f"recorded here only (ended {ends}; {run_id}: {exc.message}); {never}", **base)
        return Decision("resolved", f"recorded in {run_id} (ended {ends}); {never}", run_id=run_id, **base)

    async def _start(self, alert: Alert, receiver: str, route: Route, region: str, base: dict) -> Decision:
        rb = route.runbook
        request = self._request(alert, receiver, route, region)
        claim = runs.claim_for(request)
        known = self.active.get(claim)
        if known is not None:  # the same request's run is active: a duplicate, no round trip
            return Decision("attached", run_id=known, **base)
        # Read before admission, which applies it only if the claim would start a new run.
        refused = await self._only_serving(rb, region) or ("", "")
        guarded = GuardedClaim(claim=claim, cooldown=rb.spec.guardrails.cooldown, refusal_code=refused[0], refusal=refused[1])
        for _ in range(3):  # a holder whose run is over is dropped and the claim judged again
            answer = await self.admitter.admit(guarded)
            if answer.guard:
                outcome = "refused" if answer.guard == guarded.refusal_code else "notify-only"
                return Decision(outcome, answer.reason, code=answer.guard, **base)
            try:
                if answer.admitted or answer.attach or not await runs.dropped_if_stale(self.client, self.settings, answer):
                    started = await runs.begin(self.client, self.settings, claim, request, answer)
                    break
            except runs.RunRefused as exc:
                return Decision("refused", str(exc).removeprefix("refused: "), code="admission", **base)
            except runs.RunError as exc:
                raise Unavailable(str(exc)) from None
        else:
            raise Unavailable(f"admission for {rb.name} kept changing under three tries")
        self.active.add(claim, None if started.attached else started.handle.result_run_id)
        return Decision("attached" if started.attached else "started", run_id=started.handle.id, **base)

    def _request(self, alert: Alert, receiver: str, route: Route, region: str) -> FailoverInput:
        rb = route.runbook
        if route.rule.mode == "approval":
            # The rule asks for a person in the loop whatever the runbook's own policy says.
            approvals = rb.spec.approvals.model_copy(update={"failover": ApprovalPolicy.always})
            rb = rb.model_copy(update={"spec": rb.spec.model_copy(update={"approvals": approvals})})
        summary = alert.annotations.get("summary", "")
        return FailoverInput(
            runbook=rb,
            failed_region=region,
            strategy=route.rule.strategy,
            trigger="alert",
            reason=f"alert {alert.name} ({alert.fingerprint or 'no fingerprint'}), rule {route.rule.name}"
            + (f": {summary}" if summary else ""),
            speed=self.settings.speed,
            requested_by=f"alertmanager receiver {receiver}",
        )

    async def _admission_state(self) -> AdmissionState:
        handle = self.client.get_workflow_handle(admission.workflow_id(self.settings.temporal.task_queue))
        try:
            return await asyncio.wait_for(handle.query("state", result_type=AdmissionState), ADMISSION_QUERY_SECONDS)
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                return AdmissionState()  # nothing was ever started on this task queue
            raise Unavailable(f"cannot read admission on task queue {self.settings.temporal.task_queue}: {exc.message}") from None
        except TimeoutError:
            raise Unavailable(
                f"no drpilot worker answered on task queue {self.settings.temporal.task_queue} "
                f"within {ADMISSION_QUERY_SECONDS:g}s"
            ) from None

    async def _only_serving(self, rb: Runbook, region: str) -> tuple[str, str] | None:
        """The failed region is the only one serving, and not by the runbook's normal layout:
        traffic already left the others (an earlier failover), so moving it away from here
        would send it to a region that was itself failed."""
        try:
            weights = await self.dns_weights(rb)
        except Exception as exc:  # any provider error: without live DNS nothing is known
            return "dns_unreadable", f"cannot read live DNS of {rb.name} to check that other regions can serve ({exc}); not starting"
        serving = [r for r, w in weights.items() if w > 0]
        if serving != [region] or rb.normal_weights().get(region, 0) >= 100:
            return None
        return "only_serving", (
            f"{region} is the only region serving {rb.name} (live DNS {region} {weights[region]}%, normally "
            f"{rb.normal_weights().get(region, 0)}%): traffic already left the others, so an automatic failover "
            f"away from it could leave nothing serving; a person decides with `drpilot failover RUNBOOK --from {region}`"
        )


def provider_weights(settings: Settings, runbooks: Iterable[Runbook] = ()) -> DnsWeights:
    """Live DNS weights read through the DNS activity's own provider code, off the loop. One
    provider per kind for the process: a client built per read costs more than the read (a
    console's board reads every runbook's weights).

    The Route 53 side of `runbooks` is made ready before the first alert needs it (that alert
    measured 60 ms slower than the next): its client built now (about 100 ms of boto3's CPU), and
    each hosted zone's id found in the background (one request per zone, kept for the process).
    Cloud DNS's stays for the first read: building its client looks for credentials, which may
    ask a metadata server."""
    from activities.dns.activities import DnsActivities

    dns = DnsActivities.from_settings(settings)
    log = get_logger(component="webhook")
    zones: dict[str, Runbook] = {}  # one runbook per hosted zone
    for runbook in runbooks:
        if runbook.spec.dns.provider.value != "route53":
            continue
        try:
            dns.provider(runbook)
        except Exception as exc:  # noqa: BLE001 - each alert's read reports it (dns_unreadable); said now too
            log.warning("cannot build a DNS client", runbook=runbook.name, error=str(exc))
            return _reader(dns)
        zones.setdefault(runbook.spec.dns.zone_id or runbook.spec.dns.zone, runbook)

    def prepare() -> None:
        for runbook in zones.values():
            try:
                dns.provider(runbook).prepare(runbook)
            except Exception as exc:  # noqa: BLE001 - as above: the alert's own read reports it
                log.warning("cannot find a hosted zone", runbook=runbook.name, zone=runbook.spec.dns.zone, error=str(exc))

    if zones:
        threading.Thread(target=prepare, name="dns-prepare", daemon=True).start()
    return _reader(dns)


def _reader(dns: DnsActivities) -> DnsWeights:
    from activities.dns.activities import current_weights

    async def read(runbook: Runbook) -> dict[str, int]:
        return await asyncio.to_thread(current_weights, runbook, dns)

    return read

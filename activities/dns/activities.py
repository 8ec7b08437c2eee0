"""The DNS activities (DNS_READ, DNS_APPLY): read and set a runbook's record weights over the
provider the runbook names, and the guardrail a desired state must pass first.

A change is made as ONE provider change, so resolvers never see a gap, and then waited for
until the provider reports it applied (Route53 INSYNC, Cloud DNS done).

Idempotent and resumable: the activity reads first and makes no change when the records
already hold the desired state; after a change it heartbeats the change id, so a retry
after a crash waits on that change instead of making another. A retry that finds the
records in place without a change id (the crash came between submit and heartbeat) still
waits until they are applied: Cloud DNS lists the zone's pending changes; Route53 cannot,
so it re-submits the same UPSERTs and waits for that change.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import Self

from google.cloud import dns
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.contracts import (
    DNS_APPLY,
    DNS_CONTROLS_READY,
    DNS_READ,
    DnsApplyInput,
    DnsApplyResult,
    DnsReadInput,
    DnsState,
    ErrorType,
    RecordWeights,
    RoutingControlsReadiness,
    ScaledWait,
)
from activities.dns.clouddns import CloudDnsProvider, clouddns_client
from activities.dns.controls import OFF, ON, RoutingControlSwitch, answered, serving
from activities.dns.provider import ChangeHandle, DnsProvider, records_text
from activities.dns.route53 import Route53Provider, route53_client
from drpilot.domain.runbook import DnsSwitch, Runbook
from drpilot.domain.settings import Settings


def current_weights(runbook: Runbook, dns: DnsActivities) -> dict[str, int]:
    """Live weight per region of the runbook's first record (the traffic generator's view),
    through `dns`'s providers (kept by a caller that reads often: their clients and zone ids)."""
    return dns.provider(runbook).read(runbook).weights()


def check_weights(runbook: Runbook, weights: Mapping[str, int]) -> None:
    """Refuse (non-retryable) a desired state DNS must never be left in."""
    unknown = sorted(set(weights) - set(runbook.regions))
    if unknown:
        raise ApplicationError(
            f"DNS weights for runbook {runbook.name} name unknown region(s) "
            f"{', '.join(unknown)}; regions are {', '.join(runbook.regions)}",
            type=ErrorType.DNS_WEIGHTS_INVALID,
            non_retryable=True,
        )
    bad = {r: w for r, w in weights.items() if not isinstance(w, int) or not 0 <= w <= 100}
    if bad:
        raise ApplicationError(
            f"DNS weights for runbook {runbook.name} must be integers 0..100, got {bad}",
            type=ErrorType.DNS_WEIGHTS_INVALID,
            non_retryable=True,
        )
    total = sum(weights.values())
    if total != 100:
        raise ApplicationError(
            f"DNS weights for runbook {runbook.name} sum to {total}, not 100: {dict(weights)}",
            type=ErrorType.DNS_WEIGHTS_INVALID,
            non_retryable=True,
        )
    serving = sorted(r for r, w in weights.items() if w > 0)
    needed = max(1, runbook.spec.guardrails.min_healthy_targets)
    if len(serving) < needed:
        raise ApplicationError(
            f"refusing DNS weights {dict(weights)} for {records_text(runbook)}: "
            f"{len(serving)} region(s) would serve but spec.guardrails.min_healthy_targets "
            f"is {needed}; DNS must never be left with fewer healthy targets",
            type=ErrorType.DNS_GUARDRAIL,
            non_retryable=True,
        )


def _applied(waited: tuple[ChangeHandle, list[ScaledWait]], weights: dict[str, int]) -> DnsApplyResult:
    handle, waits = waited
    return DnsApplyResult(
        change_id=",".join(handle.change_ids),
        status=handle.status,  # type: ignore[arg-type]
        weights=weights,
        seconds_to_apply=round(time.time() - handle.submitted, 3),
        waits=waits,
    )


class DnsActivities:
    """DNS_READ and DNS_APPLY over Route53 or Cloud DNS, as each runbook says."""

    def __init__(
        self,
        route53=None,
        clouddns: dns.Client | None = None,
        settings: Settings | None = None,
    ):
        # Clients are injected by tests; missing ones are built on first use from settings.
        self._route53 = route53
        self._clouddns = clouddns
        self._settings = settings or Settings()
        self._providers: dict[str, DnsProvider] = {}
        self._switch: RoutingControlSwitch | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        return cls(settings=settings)

    def provider(self, runbook: Runbook) -> DnsProvider:
        # One provider per kind, kept: it caches zone ids, and its client's connections.
        kind = runbook.spec.dns.provider.value
        with self._lock:
            if kind not in self._providers:
                if kind == "route53":
                    client = self._route53 or route53_client(self._settings)
                    self._providers[kind] = Route53Provider(client)
                else:
                    # Paths carry the runbook's project, so one client serves every project.
                    project = runbook.spec.dns.project or ""
                    client = self._clouddns or clouddns_client(project, self._settings)
                    self._providers[kind] = CloudDnsProvider(client)
            return self._providers[kind]

    def routing_controls(self) -> RoutingControlSwitch:
        with self._lock:
            if self._switch is None:
                self._switch = RoutingControlSwitch(self._settings)
            return self._switch

    @activity.defn(name=DNS_READ)
    def read(self, input: DnsReadInput) -> DnsState:
        """What DNS answers: the records' weights, times the routing controls' health checks
        for a runbook switched by them."""
        runbook = input.runbook
        provider = self.provider(runbook)
        state = provider.read(runbook)
        if runbook.spec.dns.switch is DnsSwitch.routing_controls:
            on = {region: s == ON for region, s in self.routing_controls().states(runbook).items()}
            state = DnsState(
                records=[RecordWeights(name=r.name, weights=answered(r.weights, on)) for r in state.records]
            )
        if input.control_plane and isinstance(provider, Route53Provider):
            try:
                provider.check_control_plane(runbook)
            except ApplicationError as down:
                if down.type != ErrorType.DNS_CONTROL_PLANE_DOWN:
                    raise
                state = state.model_copy(update={"control_plane_down": down.message})
        return state

    @activity.defn(name=DNS_CONTROLS_READY)
    def routing_controls_ready(self, input: DnsReadInput) -> RoutingControlsReadiness:
        """Readiness of the routing-control switch: which endpoints answer, each control's
        state as listed, and the record sets that do not carry their health check."""
        runbook = input.runbook
        arc = runbook.spec.dns.routing_controls
        if arc is None:
            raise ApplicationError(f"runbook {runbook.name} is not switched by routing controls",
                                   type=ErrorType.DNS_CONTROLS_REFUSED, non_retryable=True)
        listed, answering, failing = self.routing_controls().listed(runbook)
        provider = self.provider(runbook)
        assert isinstance(provider, Route53Provider)  # the runbook model requires route53
        return RoutingControlsReadiness(
            endpoints=len(arc.cluster_endpoints), answering=answering, failing=failing,
            states={region: listed.get(control.arn, "missing") for region, control in arc.controls.items()},
            without_health_check=provider.without_health_check(runbook),
        )

    @activity.defn(name=DNS_APPLY)
    def apply(self, input: DnsApplyInput) -> DnsApplyResult:
        runbook = input.runbook
        check_weights(runbook, input.weights)
        desired = {region: input.weights.get(region, 0) for region in runbook.regions}
        if runbook.spec.dns.switch is DnsSwitch.routing_controls:
            return self._by_routing_controls(input, desired)
        return self._by_weights(input, desired)

    def _by_routing_controls(self, input: DnsApplyInput, desired: dict[str, int]) -> DnsApplyResult:
        """A known-good destination whose regions the controls alone can select: ONE
        UpdateRoutingControlStates (its regions On, the others Off), no Route53 call that
        changes anything. Otherwise (planned work): the weights through Route53 first, while
        a region whose control is Off stays out of the answers, then every control On."""
        runbook, switch = input.runbook, self.routing_controls()
        records = self.provider(runbook).read(runbook).weights()
        states = switch.states(runbook)
        if input.known_good:
            wanted = {region: ON if desired[region] > 0 else OFF for region in runbook.regions}
            reached = answered(records, {region: state == ON for region, state in wanted.items()})
            if serving(reached) == serving(desired):
                if states == wanted:
                    return DnsApplyResult(change_id=None, status="unchanged", weights=reached)
                switch.update(runbook, wanted, input.override_safety_rules)
                activity.logger.info("routing controls set for %s: %s", runbook.name, wanted)
                return DnsApplyResult(change_id=None, status="switched", weights=reached)
        result = self._by_weights(input, desired)
        if any(state != ON for state in states.values()):
            switch.update(runbook, dict.fromkeys(runbook.regions, ON), input.override_safety_rules)
        return result

    def _by_weights(self, input: DnsApplyInput, desired: dict[str, int]) -> DnsApplyResult:
        runbook = input.runbook
        provider = self.provider(runbook)

        def beat(handle: ChangeHandle) -> None:
            activity.heartbeat(handle.details(desired))

        resumed = self._resumable(provider, desired)
        if resumed is not None:
            try:
                return _applied(provider.wait_applied(resumed, beat, speed=input.speed), desired)
            except ApplicationError as error:
                if error.type != ErrorType.DNS_CHANGE_NOT_FOUND:
                    raise
                # The provider forgot that change (or never had it): start from a fresh read.
                activity.logger.warning("%s; reading the records again", error.message)
        current = provider.current(runbook)
        if provider.matches(runbook, desired, current):
            if activity.info().attempt == 1 or provider.lists_pending:
                # Already in place; still wait out a change of ours that is not applied.
                for pending in provider.pending(runbook):
                    provider.wait_applied(pending, beat, speed=input.speed)
                return DnsApplyResult(change_id=None, status="unchanged", weights=desired)
            # A retry that finds its weights in place but holds no change id: the attempt
            # before may have made this change and died before heartbeating it, and Route53
            # cannot list a zone's pending changes. Submit the same UPSERTs again (the
            # records do not move) and wait for that change: Route53 applies a zone's
            # changes in order, so when it is INSYNC the earlier one is too.
            activity.logger.info("records already hold %s on a retry; confirming with a fresh change", desired)
        handle = provider.apply(runbook, desired, current)
        activity.logger.info(
            "DNS change %s submitted for %s: %s",
            ",".join(handle.change_ids),
            records_text(runbook),
            desired,
        )
        beat(handle)
        return _applied(provider.wait_applied(handle, beat, speed=input.speed), desired)

    @staticmethod
    def _resumable(provider: DnsProvider, desired: dict[str, int]) -> ChangeHandle | None:
        """The change an earlier attempt made for these same weights, from its heartbeat."""
        details = activity.info().heartbeat_details
        if not details:
            return None
        last = details[0]
        handle = ChangeHandle.from_details(last)
        if handle is None or handle.provider != provider.name:
            return None
        if dict(last.get("weights") or {}) != desired:
            return None
        return handle

    def all(self) -> list[Callable]:
        return [self.read, self.apply, self.routing_controls_ready]

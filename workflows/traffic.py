"""The one owner of a run's DNS: every weight the run sets goes through `Traffic`.

It holds what the run knows about DNS and offers few verbs:
- `found(weights)`: what preflight read; DNS holds it and it served before the run, so it
  is the first known-good state.
- `move(weights, phase=, good=, fresh=)`: one change batch, then the record TTL. Before
  it: live DNS is read, and if it differs from what this run last applied (a manual fix in
  the console, another tool) the run holds for the operator instead of overwriting it
  (`resume` accepts the live weights as the new start, `abort` leaves them); if the run
  waited (approval, pause, drift) since its last gate, the `fresh` regions get one short
  health round, and failing it changes nothing. `good` marks the weights as a state an
  abort may return to, once the provider reported them applied.
- `fall_back(phase, exclude=)`: a rollback to the last good weights, guarded: only
  regions passing a health check now (and not in `exclude`) receive traffic; if none do,
  DNS stays where it is and the run fails loudly with "no healthy destination".
- `settle()`: compensation, shielded from cancellation: waits for an in-flight change,
  then returns DNS to the last good weights (guarded) unless someone else changed it.

What it needs is handed to it, and it never reaches back into the run: the runbook, the
run's pace (speed and TTL sleeps), timeline, gates (fresh and guarding checks), operator
(the drift hold), notifications and patches. Runs started before 0.2.0 replay the
behaviour they were recorded with (`patches.v2` False: no drift read, no fresh or guarded
checks), see workflows/versions.py.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities import contracts as c
    from drpilot.domain.runbook import split_weights
    from workflows import calls, projection
    from workflows.control_plane import wait_for_control_plane
    from workflows.facts import RunFacts
    from workflows.failures import NoHealthyDestination, error_type, explain
    from workflows.gates import Gates
    from workflows.notifications import Notifications
    from workflows.operator import Operator
    from workflows.pace import Pace
    from workflows.plan import PlanError, check_weights, format_weights
    from workflows.timeline import Timeline
    from workflows.types import DnsChange, Drift
    from workflows.versions import Patches


def same(a: dict[str, int], b: dict[str, int]) -> bool:
    """Equal weights, a region missing counting as weight 0."""
    return {r: w for r, w in a.items() if w} == {r: w for r, w in b.items() if w}


@dataclass(eq=False, kw_only=True)
class Traffic:
    run: RunFacts
    pace: Pace
    timeline: Timeline
    gates: Gates
    operator: Operator
    notifications: Notifications
    patches: Patches
    held: dict[str, int] = field(default_factory=dict, init=False)  # the weights DNS is known to hold
    target: dict[str, int] = field(default_factory=dict, init=False)  # where the run is heading
    last_good: dict[str, int] | None = field(default=None, init=False)  # where an abort returns
    applied: list[dict[str, int]] = field(default_factory=list, init=False)  # every batch's resulting weights, in order
    changes: list[DnsChange] = field(default_factory=list, init=False)
    drift: Drift | None = field(default=None, init=False)
    _change: Any = field(default=None, init=False)  # the in-flight dns.apply, shielded from abort
    _recorded: Any = field(default=None, init=False)  # the last dns.apply whose result is recorded
    _change_good: bool = field(default=False, init=False)  # the in-flight change goes to a state an abort may return to

    @property
    def moved(self) -> bool:
        """This run has started at least one change batch."""
        return self._change is not None

    def found(self, weights: dict[str, int]) -> None:
        self.held = dict(weights)
        self.last_good = dict(weights)

    def heading(self, weights: dict[str, int]) -> None:
        self.target = dict(weights)

    def confirm(self, weights: dict[str, int]) -> None:
        """`weights`, applied by this run, passed their analysis: an abort may return here."""
        self.last_good = dict(weights)

    # ------------------------------------------------------------------ verbs
    async def move(
        self, weights: dict[str, int], *, phase: str, good: bool, fresh: list[str] | None = None
    ) -> c.DnsApplyResult:
        check_weights(self.run.runbook, weights)
        if self.patches.v2:
            await self._hold_on_drift(phase)
            if fresh and self.gates.waited:
                await self.gates.fresh_check(phase, fresh)
        elif good:
            self.last_good = dict(weights)  # 0.1.0 set it before the change applied
        self.target = dict(weights)
        # 0.4.0: planned work (not a known-good destination) holds while Route53's control
        # plane does not answer, and goes on when it does (workflows/control_plane.py).
        hold = self.patches.v4 and not good
        while True:
            try:
                result = await self._apply(weights, phase, good=good and self.patches.v2, hold=hold)
                break
            except ActivityError as exc:
                if not hold or error_type(exc) != c.ErrorType.DNS_CONTROL_PLANE_DOWN:
                    raise
                cause = exc.cause.message if isinstance(exc.cause, ApplicationError) else explain(exc)
                await wait_for_control_plane(
                    self.run, self.pace, self.timeline, self.operator, self.notifications, phase, cause
                )
        ttl = max(r.ttl for r in self.run.runbook.spec.dns.records)
        # Resolvers keep the old answer for up to one TTL after the provider applied it.
        await self.pace.sleep(ttl / self.pace.speed, kind="ttl", unscaled=ttl, summary=f"DNS TTL {ttl}s")
        return result

    async def fall_back(self, phase: str, *, exclude: frozenset[str] = frozenset()) -> dict[str, int]:
        """All traffic back to the last good weights, to the regions that pass a health
        check now; raises NoHealthyDestination (DNS unchanged) if none does."""
        assert self.last_good is not None
        destination = self.last_good
        if self.patches.v2:
            destination = await self.guarded(self.last_good, phase, exclude=exclude)
        await self.move(destination, phase=phase, good=True)
        return destination

    async def guarded(
        self,
        weights: dict[str, int],
        phase: str,
        *,
        exclude: frozenset[str] = frozenset(),
        passed: frozenset[str] = frozenset(),
    ) -> dict[str, int]:
        """`weights` restricted to the regions that pass one health round now, re-shared in
        proportion; NoHealthyDestination if that leaves too few. `exclude`: regions known to
        be failing now; `passed`: regions that passed a gate just now (not checked again)."""
        intended = [r for r, w in sorted(weights.items()) if w > 0]
        checked = [r for r in intended if r not in exclude and r not in passed]
        results = await self.gates.gate(phase, checked, rounds=1) if checked else []
        passing = sorted({r for r in intended if r in passed} | {r.region for r in results if r.passed})
        evidence = [e for r in results for e in r.evidence]
        if passing == intended:
            return dict(weights)
        failing = sorted(set(intended) - set(passing))
        if passing:
            narrowed = split_weights({r: weights[r] for r in passing}, {r: 0 for r in weights})
            try:
                check_weights(self.run.runbook, narrowed)
            except PlanError as exc:
                raise NoHealthyDestination(
                    f"no healthy destination: {', '.join(failing)} of {format_weights(weights)} failing now "
                    f"and the rest is too few ({exc}); DNS left at {format_weights(self.held)}",
                    evidence,
                ) from None
            self.timeline.note(phase, f"destination narrowed to {format_weights(narrowed)}: {', '.join(failing)} failing now")
            return narrowed
        raise NoHealthyDestination(
            f"no healthy destination: {', '.join(failing)} failing now, so traffic does not go back to "
            f"{format_weights(weights)}; DNS left at {format_weights(self.held)}. Fix a region's health, "
            "then set the weights by hand or run again",
            evidence,
        )

    async def settle(self) -> None:
        """Compensation: DNS back to the last good weights, if this run moved it."""
        timeline = self.timeline
        if not self.moved:
            return  # this run never touched DNS
        async with timeline.phase("compensation"):
            try:
                await self.finish()
            except Exception as exc:  # noqa: BLE001 - recorded; DNS is re-read below
                timeline.note("compensation", f"in-flight DNS change ended: {explain(exc)}")
            state = await calls.dns_read(self.run.runbook)
            live = state.weights()
            if self.patches.v2 and self._drifted(state) is not None:
                # Someone else changed DNS after this run's last change: theirs is the
                # newer decision, and undoing it is not compensation.
                timeline.note(
                    "compensation",
                    f"DNS was changed outside this run (expected {format_weights(self.held)}, found "
                    f"{format_weights(live)}): left as found",
                )
                self.held = live
                return
            self.held = live
            if self.last_good is None or same(live, self.last_good):
                timeline.note("compensation", f"DNS stays at {format_weights(live)}")
                return
            destination = self.last_good
            if self.patches.v2:
                destination = await self.guarded(self.last_good, "compensation")
            result = await self._apply(destination, "compensation", good=True)
            timeline.note("compensation", f"DNS returned to {format_weights(result.weights)}")

    async def finish(self) -> None:
        """Wait for the in-flight (shielded) change if its result is not recorded yet (the
        branch awaiting it was cancelled) and record it; its failure is raised."""
        change = self._change
        if change is None or change is self._recorded:
            return
        self._record(change, await change, self.timeline.current(), dict(self.held), self._change_good)

    # ------------------------------------------------------------------ inside
    async def _apply(
        self, weights: dict[str, int], phase: str, *, good: bool = False, hold: bool = False
    ) -> c.DnsApplyResult:
        """One change batch; once the provider reports it applied and `good`, it is where an
        abort returns (even if the abort arrived while it was in flight). `good` is also what
        lets routing controls alone reach it (a known-good destination)."""
        before = dict(self.held)
        change = calls.start_dns_apply(
            self.run.runbook, weights, self.pace.speed, known_good=good,
            overrides=self.run.override_safety_rules, hold_on_control_plane=hold,
        )
        self._change, self._change_good = change, good
        try:
            # Shielded: an abort must not cancel a change batch half-way.
            result = await asyncio.shield(change)
        except asyncio.CancelledError:
            # Aborted while the batch was in flight: it goes on; wait for where it ended so
            # the timeline records the change as made, not as aborted. Shielded however often
            # this branch is cancelled (together() cancels its unfinished branches again):
            # awaiting the activity itself would cancel it.
            while not change.done():
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await asyncio.shield(change)
            if not change.cancelled() and change.exception() is None:
                self._record(change, change.result(), phase, before, good)
            raise
        self._record(change, result, phase, before, good)
        projection.record(result.waits)
        return result

    def _record(
        self, change: Any, result: c.DnsApplyResult, phase: str, before: dict[str, int], good: bool = False
    ) -> None:
        """Where a finished change left DNS: the weights now held, and the run's history."""
        self.held = dict(result.weights)
        if good:
            self.last_good = dict(result.weights)
        self.applied.append(dict(result.weights))
        self._recorded = change
        self.changes.append(
            DnsChange(
                phase=phase, before=before, after=dict(result.weights),
                status=result.status, at=workflow.now(),
            )
        )
        if phase in [p.name for p in self.timeline.phases]:
            self.timeline.note(phase, f"DNS {format_weights(result.weights)} ({result.status})")
        self.timeline.changed()

    def _drifted(self, state: c.DnsState) -> Drift | None:
        for record in state.records:
            if not same(record.weights, self.held):
                return Drift(expected=dict(self.held), found=dict(record.weights), record=record.name, since=workflow.now())
        return None

    async def _hold_on_drift(self, phase: str) -> None:
        state = await calls.dns_read(self.run.runbook)
        drift = self._drifted(state)
        if drift is None:
            return
        self.drift = drift
        message = (
            f"DNS changed outside this run: {drift.record} expected {format_weights(drift.expected)}, "
            f"found {format_weights(drift.found)}; holding: `drpilot resume {workflow.info().workflow_id}` "
            "accepts the live weights as the new start, `drpilot abort` leaves them"
        )
        self.timeline.note(phase, message)
        self.timeline.say(message)
        self.notifications.notify("held", f"{self.notifications.subject} holds: {message}")
        try:
            by = await self.operator.hold_for("drift")
        finally:
            self.drift = None
        # The operator vouched for what DNS holds now: it is where an abort returns.
        self.held = dict(drift.found)
        self.last_good = dict(drift.found)
        self.timeline.note(phase, f"resumed by {by}: live DNS {format_weights(drift.found)} accepted as the new start")

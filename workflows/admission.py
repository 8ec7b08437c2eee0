"""AdmissionWorkflow: one run per runbook, and per DNS record, whatever the action.

Run ids are `action:runbook`, so Temporal alone would let a failover and a failback of one
runbook (or two runbooks sharing a record) run at once and undo each other. Every front
door (CLI, webhook, drills) therefore claims a run here first, with an update: updates of
one workflow are applied one at a time, so two doors claiming in the same millisecond get
one answer each and exactly one is admitted. One AdmissionWorkflow per task queue (a
drpilot deployment), started on demand by update-with-start.

A run releases its claim with a signal as it ends (`release_claim`, from workflows/control.py
and workflows/drill.py). A run that never
does (terminated, or its start failed after the claim) is found by the front door, which
sees the holder's run closed and drops the claim (`release_stale`).

The table is small (one entry per active run); the history is kept short by continuing as
new, carrying the table.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.contracts import (
        Admission,
        Admissions,
        Breaker,
        Claim,
        Claims,
        GuardedClaim,
        GuardedClaims,
        Holder,
    )
    from drpilot.domain.durations import format_duration
    from workflows.types import AdmissionState, Ended, ReleaseInput, StaleInput

RELEASE = "release"
# Continue as new well before Temporal's 10,240-event warning; each claim costs ~3 events.
MAX_EVENTS = 2000


def workflow_id(task_queue: str) -> str:
    return f"drpilot-admission:{task_queue}"


async def release_claim(status: str) -> None:
    """Tell admission this run (a failover, failback or drill) no longer holds its runbook."""
    info = workflow.info()
    try:
        await workflow.get_external_workflow_handle(workflow_id(info.task_queue)).signal(
            RELEASE, ReleaseInput(run_id=info.workflow_id, status=status, ended_at=workflow.now())
        )
    except Exception as exc:  # noqa: BLE001 - not started through admission (tests, drills' children)
        # A claim left behind is found stale by the next front door.
        workflow.logger.info("admission release not delivered: %s", exc)


def conflict(held: Claim, wanted: Claim) -> str:
    """What the two claims share, or "" when they may run side by side."""
    if held.runbook == wanted.runbook:
        return f"runbook {wanted.runbook}"
    shared = sorted(set(held.dns_records) & set(wanted.dns_records))
    return f"DNS record {shared[0]}" if shared else ""


def differences(held: Claim, wanted: Claim) -> list[str]:
    keys = sorted(set(held.request) | set(wanted.request))
    return [
        f"{k}: running {held.request.get(k, '-')}, asked {wanted.request.get(k, '-')}"
        for k in keys
        if held.request.get(k) != wanted.request.get(k)
    ]


@workflow.defn
class AdmissionWorkflow:
    @workflow.init
    def __init__(self, state: AdmissionState) -> None:
        self.holders: dict[str, Holder] = {h.claim.run_id: h for h in state.holders}
        self.last_ended: dict[str, Ended] = dict(state.last_ended)
        self.auto_starts: list[datetime] = list(state.auto_starts)

    @workflow.run
    async def run(self, state: AdmissionState) -> None:
        await workflow.wait_condition(
            lambda: workflow.info().get_current_history_length() > MAX_EVENTS
            or workflow.info().is_continue_as_new_suggested()
        )
        await workflow.wait_condition(workflow.all_handlers_finished)
        workflow.continue_as_new(self.state())

    @workflow.update
    def claim(self, wanted: Claim) -> Admission:
        held = self._held(wanted)
        return held if held is not None else self._admit(wanted)

    def _held(self, wanted: Claim) -> Admission | None:
        """The answer when a held claim conflicts with this one (attach or refuse), else None."""
        for holder in self.holders.values():
            shared = conflict(holder.claim, wanted)
            if not shared:
                continue
            if holder.claim.run_id == wanted.run_id:
                diff = differences(holder.claim, wanted)
                return Admission(admitted=False, attach=not diff, holder=holder, conflict=shared, differences=diff)
            return Admission(admitted=False, holder=holder, conflict=shared)
        return None

    def _admit(self, wanted: Claim) -> Admission:
        holder = Holder(claim=wanted, since=workflow.now())
        self.holders[wanted.run_id] = holder
        return Admission(admitted=True, holder=holder)

    @workflow.update
    def claim_many(self, wanted: Claims) -> Admissions:
        """Each claim in order, as `claim` would answer it: the ones before it in the batch
        hold what they were admitted to. One update, whatever the fleet's size (Temporal
        allows 10 in-flight updates per workflow execution)."""
        return Admissions(answers=[self.claim(claim) for claim in wanted.claims])

    @workflow.update
    def claim_guarded(self, wanted: GuardedClaims) -> Admissions:
        """Alerts' claims (the webhook), each in order: a duplicate of a held run attaches and
        a conflict is refused as `claim` answers; a claim that would start a new run must then
        pass the front door's own check, the runbook's cooldown and the circuit breaker. Held
        here, so N webhook replicas share one breaker and one
        cooldown: an admission counts its start in the same update that admits it."""
        now = wanted.at
        self.auto_starts = [t for t in self.auto_starts if t > now - wanted.breaker.window]
        answers = []
        for guarded in wanted.claims:
            answer = self._held(guarded.claim)
            if answer is None:
                code, reason = self._guard(guarded, wanted.breaker, now)
                if code:
                    answer = Admission(admitted=False, guard=code, reason=reason)
                else:
                    answer = self._admit(guarded.claim)
                    self.auto_starts.append(now)
            answers.append(answer)
        return Admissions(answers=answers)

    def _guard(self, guarded: GuardedClaim, breaker: Breaker, now: datetime) -> tuple[str, str]:
        """Why a new run may not start now, as (code, reason); ("", "") when it may."""
        runbook = guarded.claim.runbook
        ended = self.last_ended.get(runbook)
        if ended is not None and ended.ended_at is not None and now < ended.ended_at + guarded.cooldown:
            until = ended.ended_at + guarded.cooldown
            return "cooldown", (
                f"cooldown: {ended.run_id} ended ({ended.status}) at {ended.ended_at.astimezone(UTC):%H:%M:%SZ}; "
                f"guardrails.cooldown {format_duration(guarded.cooldown)} keeps alerts from starting {runbook} "
                f"until {until.astimezone(UTC):%H:%M:%SZ}"
            )
        if len(self.auto_starts) >= breaker.max_runs:
            closes = (min(self.auto_starts) + breaker.window).astimezone(UTC)
            return "circuit_breaker", (
                f"circuit breaker open: {len(self.auto_starts)} run(s) auto-started in the last "
                f"{format_duration(breaker.window)} (at most {breaker.max_runs}); it closes at {closes:%H:%M:%SZ}"
            )
        return guarded.refusal_code, guarded.refusal

    @workflow.signal(name=RELEASE)
    def release(self, ended: ReleaseInput) -> None:
        holder = self.holders.pop(ended.run_id, None)
        # A drill that was blocked changed nothing: it must not start the runbook's cooldown
        # (the webhook would then only notify about the very alert that blocked it).
        if holder is not None and ended.status != "blocked":
            self.last_ended[holder.claim.runbook] = Ended(
                run_id=ended.run_id, status=ended.status, ended_at=ended.ended_at or workflow.now()
            )

    @workflow.update
    def release_stale(self, stale: StaleInput) -> bool:
        holder = self.holders.get(stale.run_id)
        if holder is None or holder.since != stale.since:
            return False
        del self.holders[stale.run_id]
        return True

    @workflow.query
    def state(self) -> AdmissionState:
        return AdmissionState(
            holders=list(self.holders.values()), last_ended=dict(self.last_ended), auto_starts=list(self.auto_starts)
        )


# How long a claim may go without its run existing before a front door calls it stale: the
# claiming door starts the run right after the claim, in well under this.
UNSTARTED_GRACE = timedelta(seconds=60)

"""What goes into and comes out of a run: inputs, the result, progress and operator requests.

Single frozen models so fields can be added compatibly (docs/architecture.md, "A run, end
to end"). These cross the Temporal boundary through the pydantic data converter; the CLI,
the webhook and the report read them, so their top-level names are part of drpilot's interface.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from temporalio.common import SearchAttributeKey

from activities.contracts import CheckEvidence, ColdStart, Holder, Trigger
from drpilot.domain.runbook import Runbook

Strategy = Literal["graceful", "ungraceful"]
Action = Literal["failover", "failback"]
Status = Literal["completed", "failed", "rolled_back", "aborted"]
Outcome = Literal["running", "ok", "failed", "skipped", "aborted", "rolled_back"]
WaitingFor = Literal["approval", "resume", "drift", "route53 control plane"]

WORKFLOW_NAMES: dict[str, str] = {"failover": "FailoverWorkflow", "failback": "FailbackWorkflow"}

# Custom search attributes (Keyword) every namespace must have registered (README "Production
# deployment"; the sandbox's dev server does): the runbook, set by the front door, and drpilot's
# outcome, set by the run as it ends (Temporal says "completed" for a rolled-back run too).
RUNBOOK = SearchAttributeKey.for_keyword("DrpilotRunbook")
OUTCOME = SearchAttributeKey.for_keyword("DrpilotOutcome")
SEARCH_ATTRIBUTES = (RUNBOOK, OUTCOME)


class Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def workflow_id(action: Action, runbook: str) -> str:
    """The run's id; workflows/admission.py keeps a second action (or runbook on its records) out."""
    return f"{action}:{runbook}"


# ------------------------------------------------------------------------------- inputs
class RunInput(Frozen):
    """What a failover and a failback are both started with."""

    runbook: Runbook
    trigger: Trigger = "cli"
    reason: str = ""
    # Rehearsal speed: every wait the run makes is divided by it (1 in production).
    speed: float = Field(1.0, ge=1.0)
    requested_by: str = ""
    # Set by a rehearsal drill (workflows/drill.py) against the sandbox: no approval wait.
    rehearsal: bool = False
    # Route 53 ARC safety rules (names in spec.dns.routing_controls.safety_rules, or ARNs) this
    # run may override: `--override-safety-rule NAME`, the break-glass.
    override_safety_rules: list[str] = Field(default_factory=list)


class FailoverInput(RunInput):
    failed_region: str
    # None: the standby region(s); with no standby, the other serving regions, which then
    # share the failed region's weight in proportion to capacity (workflows.plan).
    target_regions: list[str] | None = None
    # graceful: prepare, gate, then move DNS; ungraceful (the region is dark): DNS first, prepare beside.
    strategy: Strategy = "graceful"


class FailbackInput(RunInput):
    original_region: str  # the region traffic returns to


# ---------------------------------------------------------------------------- admission
class AlertResolved(Frozen):
    """An alert the run's trigger belongs with has resolved (the webhook signals it)."""

    name: str
    fingerprint: str = ""
    ends_at: datetime | None = None
    receiver: str = ""


class ReleaseInput(Frozen):
    run_id: str
    status: str = ""
    ended_at: datetime | None = None


class StaleInput(Frozen):
    """A front door found the holder's run closed (terminated, or never started)."""

    run_id: str
    since: datetime  # the holder's `since`, so a newer claim of the same id is not dropped


class Ended(Frozen):
    run_id: str
    status: str
    ended_at: datetime | None = None


class AdmissionState(Frozen):
    holders: list[Holder] = Field(default_factory=list)
    last_ended: dict[str, Ended] = Field(default_factory=dict)  # runbook -> its last run's end
    # When each run admitted through a guarded claim (an alert's) was admitted, within the
    # circuit breaker's window: the breaker every webhook replica shares.
    auto_starts: list[datetime] = Field(default_factory=list)


# ------------------------------------------------------------------------------- result
class PhaseRecord(Frozen):
    name: str
    started_at: datetime
    ended_at: datetime | None = None
    outcome: Outcome = "running"
    detail: str = ""
    evidence: list[CheckEvidence] = Field(default_factory=list)

    @property
    def seconds(self) -> float | None:
        if self.ended_at is None:
            return None
        return (self.ended_at - self.started_at).total_seconds()


class DnsChange(Frozen):
    """One DNS change batch this run made, as the provider reported it."""

    phase: str  # the phase that made it, e.g. "dns-switch", "shift 50%", "compensation"
    before: dict[str, int]  # weights DNS held just before
    after: dict[str, int]  # weights the provider reported applied
    status: str  # INSYNC, done, unchanged
    at: datetime  # when the provider reported it applied


class Drift(Frozen):
    """Live DNS differs from what this run last applied: someone else changed it."""

    expected: dict[str, int]
    found: dict[str, int]
    record: str = ""  # the first record that differs
    since: datetime | None = None


class WorldState(Frozen):
    """DNS weights and replica counts as read from the providers at one moment."""

    dns: dict[str, int] = Field(default_factory=dict)  # region -> weight
    replicas: dict[str, dict[str, int]] = Field(default_factory=dict)  # region -> ns/name -> desired
    ready: dict[str, dict[str, int]] = Field(default_factory=dict)  # region -> ns/name -> ready
    unreachable: list[str] = Field(default_factory=list)  # regions whose cluster did not answer


class RtoProjection(Frozen):
    """What a rehearsal's RTO stands for at speed 1 (workflows/projection.py): the measured
    RTO with each scaled wait on the critical path counted at its unscaled length."""

    speed: float
    measured_seconds: float  # the RTO on this run's clock
    projected_seconds: float  # the same run at speed 1
    waits: dict[str, float]  # kind (pods, dns-pending, ttl, ...) -> unscaled seconds on the path
    waits_measured: dict[str, float]  # the same waits as they took here
    # Everything counted at its measured length: Temporal, requests, approvals.
    other_seconds: float
    uncertainty_seconds: float = 0.0  # +/- from polling granularity


class RunResult(Frozen):
    run_id: str  # the workflow id: what `drpilot status/approve/abort RUN_ID` take
    status: Status
    phases: list[PhaseRecord]
    # Run start to the post-switch health pass (failover) or to 100% home (failback);
    # None when the run never got there.
    rto_seconds: float | None
    objective_rto_seconds: float
    final_state: WorldState
    # Rehearsal speed the run used; at speed > 1 every wait was divided by it.
    speed: float
    # The RTO at speed 1: the projection's (0.2.0), else rto_seconds * speed, an upper bound.
    rto_seconds_unscaled: float | None = None
    projection: RtoProjection | None = None
    action: Action
    runbook: str
    temporal_run_id: str = ""
    started_at: datetime | None = None
    ended_at: datetime | None = None
    before_state: WorldState | None = None
    weights_applied: list[dict[str, int]] = Field(default_factory=list)  # every DNS change, in order
    messages: list[str] = Field(default_factory=list)
    dns_changes: list[DnsChange] = Field(default_factory=list)  # every DNS change, with its before
    # Who or what started it and who approved it (None: no approval given, or a result from
    # before these were recorded; the report then reads them from the run's history).
    trigger: Trigger | None = None
    requested_by: str = ""
    approved_by: str | None = None
    override_safety_rules: list[str] = Field(default_factory=list)  # the break-glass the run was given
    # Each scale-up's cold start per region and workload, stage by stage (the run's seconds:
    # multiply by `speed` for speed 1).
    cold_starts: list[ColdStart] = Field(default_factory=list)

    @property
    def rto_met(self) -> bool | None:
        if self.rto_seconds is None or self.action == "failback":
            return None
        unscaled = self.rto_seconds_unscaled if self.rto_seconds_unscaled is not None else self.rto_seconds * self.speed
        return unscaled <= self.objective_rto_seconds


# ----------------------------------------------------------------------------- progress
class Progress(Frozen):
    run_id: str
    action: Action
    runbook: str
    state: Literal["running", "finished"]
    status: Status | None = None  # set once finished
    phase: str
    step: str | None = None  # the shift step, e.g. "50%"
    weights: dict[str, int] = Field(default_factory=dict)  # last DNS weights known applied
    target_weights: dict[str, int] = Field(default_factory=dict)  # where the run is heading
    waiting_for: WaitingFor | None = None
    waiting_cause: str | None = None  # why, when it is not an operator's move (e.g. the provider's error)
    drift: Drift | None = None  # set while the run holds because DNS changed under it
    approval_required: bool = False
    approved_by: str | None = None
    requested_by: str = ""  # who started the run
    # False when approvals.distinct_approver refuses an approval from requested_by (four eyes).
    starter_may_approve: bool = True
    paused: bool = False
    aborting: bool = False
    started_at: datetime
    elapsed_seconds: float
    speed: float
    phases: list[PhaseRecord] = Field(default_factory=list)
    messages: list[str] = Field(default_factory=list)
    result: RunResult | None = None


# --------------------------------------------------------------------- operator requests
class ApproveInput(Frozen):
    by: str = ""
    comment: str = ""


class AbortInput(Frozen):
    by: str = ""
    reason: str = ""


class PauseInput(Frozen):
    by: str = ""


class ControlResult(Frozen):
    phase: str
    message: str
    weights: dict[str, int] = Field(default_factory=dict)


# --------------------------------------------------------------------------------- drills
DrillMode = Literal["rehearsal", "live"]
DrillStatus = Literal["running", "completed", "failed", "aborted", "blocked"]  # running: the query only


class DrillInput(Frozen):
    """A game-day drill (workflows/drill.py): fail over away from `from_region`, soak, fail back."""

    runbook: Runbook
    from_region: str  # the region the drill takes traffic away from (the primary by default)
    # rehearsal: against the sandbox twin (the worker must point at one), no approvals;
    # live: against the real environment, approvals as the runbook says.
    mode: DrillMode = "rehearsal"
    speed: float = Field(1.0, ge=1.0)
    requested_by: str = ""
    scheduled_by: str = ""  # the Temporal Schedule that started it; "" for `drpilot drill run`


class DrillResult(Frozen):
    """What a drill did: also its evidence pack, written as JSON to spec.drills.evidence."""

    drill_id: str
    runbook: str
    mode: DrillMode
    from_region: str
    status: DrillStatus
    reason: str = ""  # why it was blocked, failed or aborted
    phases: list[PhaseRecord] = Field(default_factory=list)  # admission, preflight, failover, soak, failback, cleanup
    failover: RunResult | None = None  # the child runs' own results: gates with their numbers, DNS changes
    failback: RunResult | None = None
    rto_seconds: float | None = None  # the failover's, as measured (divide by nothing: see speed)
    rto_seconds_unscaled: float | None = None
    objective_rto_seconds: float
    rto_met: bool | None = None
    firing_alerts: list[str] = Field(default_factory=list)  # blocking alerts found firing
    approvals: list[str] = Field(default_factory=list)  # "failover approved by alice", from the children
    changes: list[str] = Field(default_factory=list)  # every change made, in order, one line each
    requested_by: str = ""
    scheduled_by: str = ""
    speed: float = 1.0
    started_at: datetime
    ended_at: datetime | None = None
    evidence_uri: str = ""  # where this pack was written; "" if it could not be
    messages: list[str] = Field(default_factory=list)
    # Which runbook (Runbook.digest) and which drpilot ran it: "" in packs written before these were recorded.
    runbook_digest: str = ""
    drpilot_version: str = ""


# ------------------------------------------------------------------------------ readiness
class ReadinessInput(Frozen):
    runbook: Runbook
    # Set by the readiness schedule: compare with the schedule's previous verdict and tell
    # the runbook's notifiers when it changed. A check run by hand notifies nobody.
    notify_changes: bool = False

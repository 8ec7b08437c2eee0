"""Activity names and their input / result types: the only part of `activities` that
workflows import (docs/architecture.md, "Layers"). No provider SDK is imported here.

One input and one named result per activity, frozen, so fields can be added compatibly.
Every input carries the runbook (a few KB) rather than a reference to it, so an activity
never reads configuration the workflow did not decide on. Waits inside an activity are
divided by `speed` (the rehearsal speed; 1 in production); what a request takes, and the
limits it is judged by, never are.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from drpilot.domain.runbook import Notifier, Runbook, RunEventName


class Contract(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# ---------------------------------------------------------------------------------- names
# Workflows call activities by these names; tests replace an activity by registering
# another function under the same name.
DNS_READ = "dns.read"
DNS_APPLY = "dns.apply"
DNS_CONTROLS_READY = "dns.routing_controls_ready"
KUBE_READ = "kube.read"
KUBE_SCALE = "kube.scale"
KUBE_ROLLOUT_RESTART = "kube.rollout_restart"
KUBE_CAPACITY = "kube.capacity"
IMAGES_CHECK = "images.check"
QUOTA_CHECK = "quota.check"
ARTIFACTS_VERIFY = "artifacts.verify"
ARTIFACTS_RESTORE = "artifacts.restore_from_archive"
ARTIFACTS_SYNC = "artifacts.sync"
VELERO_RESTORE = "velero.restore"
VELERO_BACKUP = "velero.backup_to_restore"
PROBES_WARMUP = "probes.warmup"
PROBES_HEALTH = "probes.health_gate"
PROBES_ANALYSE = "probes.analyse"
NOTIFY_SEND = "notify.send"
DRILL_ALERTS = "drill.firing_alerts"
DRILL_EVIDENCE = "drill.write_evidence"
DRILL_LAST = "drill.last_completed"
DRILL_CLAIM = "drill.claim"
READINESS_PREVIOUS = "readiness.previous"
REHEARSAL_WAIT = "rehearsal.wait"
# A runbook's data-tier blocks (spec.blocks): the engine maps a block to these inputs.
BLOCKS_AURORA_READ = "blocks.aurora_read"
BLOCKS_AURORA_SWITCH = "blocks.aurora_switch"
BLOCKS_JOB_PREFLIGHT = "blocks.job_preflight"
BLOCKS_JOB_RUN = "blocks.job_run"


# ----------------------------------------------------------------------- blocks (engine)
# The kinds of spec.blocks the engine carries out itself (drpilot/domain/blocks.py); a block
# of kind scale is kube.scale (to="exact"). Inputs carry explicit fields, decided by the
# workflow ({source} / {target} already replaced), never the runbook's block.
BLOCK_HTTP = "blocks.http"
BLOCK_HTTP_PREFLIGHT = "blocks.http_preflight"


class HttpCall(Contract):
    method: str
    url: str
    body: Any = None
    # Header -> the name of the worker's environment variable holding its value: the value
    # is read by the activity and never enters a history, a result or a log.
    headers_from_env: dict[str, str] = Field(default_factory=dict)


class HttpBlockInput(Contract):
    block: str  # the block's name, in messages
    call: HttpCall
    idempotency_key: str  # from the run and the block: a retry is the same request to the receiver
    expect: int | None = None  # the status that counts as done; None: any 2xx
    timeout_seconds: float = 30.0


class HttpBlockResult(Contract):
    status: int
    target: str  # scheme://host/path, without the query
    seconds: float


class HttpPreflightInput(Contract):
    block: str
    env: list[str]  # the environment variables its requests read


class HttpPreflightResult(Contract):
    missing: list[str]  # of those, the ones not set on this worker


# ---------------------------------------------------------------------- rehearsal waits
class ScaledWait(Contract):
    """A wait a rehearsal shortened by its speed (pods starting, DNS PENDING, a Glacier or
    Velero restore, the pause between health rounds, a DNS TTL, a bake): how long it took in
    this run and how long it stands for at speed 1. A run's RTO projection
    (workflows/projection.py) counts it at `unscaled_seconds`. Empty at speed 1."""

    kind: str  # pods, dns-pending, glacier, velero, health-interval, analysis, measurement, ttl, bake
    seconds: float  # wall seconds it took here
    unscaled_seconds: float  # what it stands for at speed 1
    # Half the polling interval, at speed 1's scale: when a poll saw it done, it had been
    # done for up to one interval.
    uncertainty_seconds: float = 0.0


# ------------------------------------------------------------------------------------ DNS
class DnsReadInput(Contract):
    runbook: Runbook
    # Also check that Route53's control plane (ChangeResourceRecordSets / GetChange) answers:
    # a failover that switches by weights needs it, and must know before it changes anything.
    control_plane: bool = False


class RecordWeights(Contract):
    name: str  # record name, e.g. inference.example.com.
    weights: dict[str, int]  # region -> weight (0-255 Route53, 0-1000 Cloud DNS; we use 0-100)


class DnsState(Contract):
    records: list[RecordWeights]
    # Asked for (DnsReadInput.control_plane) and Route53's control plane did not answer: why.
    control_plane_down: str = ""

    def weights(self) -> dict[str, int]:
        """The weights of the first record (all records move together)."""
        return dict(self.records[0].weights) if self.records else {}


class DnsApplyInput(Contract):
    runbook: Runbook
    weights: dict[str, int]  # desired weight per region for every record; sums to 100
    speed: float = 1.0
    # switch: routing_controls only. A known-good destination (a failover, a rollback, an
    # abort) is reached by the routing controls alone whenever they send traffic to exactly
    # its regions; planned work (a shift step) moves the weights through Route53.
    known_good: bool = False
    # Names (spec.dns.routing_controls.safety_rules) or ARNs of safety rules to override.
    override_safety_rules: list[str] = Field(default_factory=list)


class RoutingControlsReadiness(Contract):
    """What readiness needs of a runbook switched by routing controls (all read-only)."""

    endpoints: int  # the cluster endpoints the runbook names
    answering: list[str]  # the regions of the endpoints that answered
    failing: list[str]  # "region: why" of those that did not
    states: dict[str, str]  # region -> its control's state as listed, or "missing"
    without_health_check: list[str]  # "record (region)" of record sets not carrying their region's health check


class DnsApplyResult(Contract):
    change_id: str | None  # None when the records already had these weights (no change made)
    # "switched": routing controls were set (ARC's data plane; no change id, nothing to wait for)
    status: Literal["INSYNC", "done", "unchanged", "switched"]
    weights: dict[str, int]  # what DNS answers now: the weights, times the routing controls' health checks
    seconds_to_apply: float = 0.0
    waits: list[ScaledWait] = Field(default_factory=list)


# ----------------------------------------------------------------------------- Kubernetes
class KubeReadInput(Contract):
    runbook: Runbook
    region: str
    # "namespace/deployment" read instead of the runbook's workloads there (a scale block's
    # preflight: Deployments that are not serving capacity).
    workloads: list[str] = Field(default_factory=list)


class DeploymentState(Contract):
    namespace: str
    name: str
    replicas: int
    ready: int


class ReplicaState(Contract):
    region: str
    deployments: list[DeploymentState]


class CapacityInput(Contract):
    """Whether a region can run the workloads at the counts a run would ask for (`to`)."""

    runbook: Runbook
    region: str
    to: Literal["active", "standby"] = "active"


class WorkloadCapacity(Contract):
    workload: str  # namespace/deployment
    wanted: int  # replicas the procedure asks for
    running: int  # pods already bound to a node
    per_pod: dict[str, str]  # requests of one pod: extended resources, cpu, memory
    fit_now: int  # of the pods to add, how many fit on the nodes there now
    fit_after_scale_out: int  # ...and with the autoscaler's headroom as well

    @property
    def adding(self) -> int:
        return max(0, self.wanted - self.running)


class CapacityResult(Contract):
    """A region's capacity for a run's counts, said in numbers (`detail`)."""

    region: str
    verdict: Literal["fits", "fits after scale-out", "short", "not checked"]
    detail: str
    workloads: list[WorkloadCapacity] = Field(default_factory=list)
    headroom: list[str] = Field(default_factory=list)  # what each autoscaler may add
    # instance type -> [nodes the scale-out would start, vCPUs of each]; and vCPUs of the
    # nodes of each instance type running now (what the quota already holds)
    scale_out: dict[str, list[int]] = Field(default_factory=dict)
    running_vcpus: dict[str, int] = Field(default_factory=dict)
    nodes: int = 0
    requests: int = 0  # API requests the reads took (lists are paginated)

    @property
    def ready(self) -> bool:
        return self.verdict in ("fits", "fits after scale-out")


class ImagesInput(Contract):
    runbook: Runbook
    region: str


class ImagesResult(Contract):
    """Whether the images a region's Deployments run can be pulled there when needed."""

    region: str
    verdict: Literal["ok", "finding", "not checked"]
    detail: str
    images: list[str] = Field(default_factory=list)

    @property
    def ready(self) -> bool:
        return self.verdict == "ok"


class QuotaInput(Contract):
    """The account's vCPU quota for the GPU instances a region's scale-out would start."""

    runbook: Runbook
    region: str
    capacity: CapacityResult


class QuotaResult(Contract):
    region: str
    verdict: Literal["ok", "short", "not checked"]
    detail: str

    @property
    def ready(self) -> bool:
        return self.verdict == "ok"


class ScaleInput(Contract):
    runbook: Runbook
    region: str
    # "active" / "standby" take each workload's count from the runbook; `counts`
    # ("namespace/name" -> N) restores exact numbers recorded earlier.
    to: Literal["active", "standby", "exact"]
    counts: dict[str, int] = Field(default_factory=dict)
    wait_ready: bool = True
    timeout_seconds: float = 600.0  # already divided by speed by the caller
    speed: float = 1.0


class ColdStart(Contract):
    """How long the pods a scale-up started took, stage by stage: seconds from the scale
    request until the last of them was scheduled, had its image pulled, started its
    containers, turned ready; then until the region's model versions answered ready and its
    warm-up ended (read by the warm-up, `warmed_by`). None: the stage was not seen (e.g. no
    Pulled event kept, no warm-up). Seconds are the run's own: a rehearsal's are divided by
    its speed."""

    workload: str  # namespace/deployment
    pods: int
    scheduled: float | None = None
    pulled: float | None = None
    started: float | None = None
    ready: float | None = None
    region: str = ""
    requested_at: float | None = None  # the scale request, epoch seconds (the worker's clock)
    version_ready: float | None = None
    warmed: float | None = None

    STAGES: ClassVar[tuple[str, ...]] = ("scheduled", "pulled", "started", "ready", "version_ready", "warmed")
    NAMES: ClassVar[dict[str, str]] = {"version_ready": "model version ready"}

    def stages(self) -> list[tuple[str, float | None]]:
        """(stage as said, seconds from the scale request) in order, e.g. ("model version ready", 70.0)."""
        return [(self.NAMES.get(n, n), getattr(self, n)) for n in self.STAGES]

    def unscaled(self, stage: str, speed: float) -> float | None:
        """Seconds to `stage` at speed 1, from a rehearsal at `speed`: up to ready the waits were
        simulated (pod start, node provisioning: divided by the speed, so times it); after it,
        the versions' load and the warm-up's requests took their real time (never divided)."""
        value = getattr(self, stage)
        if value is None or speed == 1:
            return value
        if stage in ("version_ready", "warmed") and self.ready is not None:
            return self.ready * speed + max(value - self.ready, 0.0)
        return value * speed

    def warmed_by(self, warm: WarmupResult) -> ColdStart:
        """With the stages the region's warm-up saw: its model versions ready, its end."""
        if self.requested_at is None:
            return self

        def since(at: float | None) -> float | None:
            return None if at is None else round(max(at - self.requested_at, 0.0), 3)

        return self.model_copy(update={"version_ready": since(warm.versions_ready_at), "warmed": since(warm.ended_at)})


class ScaleResult(Contract):
    region: str
    deployments: list[DeploymentState]
    changed: list[str]  # "namespace/name" of deployments that were patched
    waits: list[ScaledWait] = Field(default_factory=list)
    cold_start: list[ColdStart] = Field(default_factory=list)  # of the pods this scale started


class RolloutRestartInput(Contract):
    """`kubectl rollout restart` of the runbook's workloads in a region, keyed by
    `restarted_at` (written to the pod template's kubectl.kubernetes.io/restartedAt): a
    deployment already carrying that value is not restarted again, so a retry is one
    restart. Use a value the workflow decides, e.g. its id and the phase. It returns once
    the new pods are all ready (within `timeout_seconds`, already divided by speed)."""

    runbook: Runbook
    region: str
    restarted_at: str
    timeout_seconds: float = 600.0
    speed: float = 1.0


class RolloutRestartResult(Contract):
    region: str
    deployments: list[DeploymentState]
    restarted: list[str]  # "namespace/name" patched by this call (empty on a retry)
    waits: list[ScaledWait] = Field(default_factory=list)


# ------------------------------------------------------------------------------ artifacts
class ArtifactInput(Contract):
    runbook: Runbook
    region: str
    model: str  # model name from spec.models
    version: str


class ArtifactProblem(Contract):
    key: str  # s3://bucket/key
    problem: Literal["missing", "corrupt", "archived"]
    detail: str = ""


class VerifyResult(Contract):
    region: str
    model: str
    version: str
    files: int
    bytes: int
    problems: list[ArtifactProblem]
    # When the manifest was written (its S3 LastModified): how old the verified copy is.
    manifest_created_at: datetime | None = None
    # Files whose body was read and hashed (S3 held no checksum the manifest records, or
    # the model asks for `verify: deep`); 0 when S3's metadata confirmed every file.
    hashed: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems


class RestoreInput(Contract):
    runbook: Runbook
    region: str
    model: str
    version: str
    # Seconds left of the RTO budget: Expedited retrieval when it must fit, Standard otherwise.
    budget_seconds: float = 300.0
    speed: float = 1.0


class RestoreResult(Contract):
    region: str
    model: str
    tier: Literal["Expedited", "Standard", "Bulk", "none"]  # the slowest tier requested
    restored: list[str]  # keys copied into the region's bucket
    verify: VerifyResult
    tiers: dict[str, str] = Field(default_factory=dict)  # path -> Glacier tier requested
    waits: list[ScaledWait] = Field(default_factory=list)


class SyncInput(Contract):
    runbook: Runbook
    model: str
    version: str
    source_region: str
    target_region: str


class SyncResult(Contract):
    copied: list[str]
    unchanged: int
    verify: VerifyResult


# --------------------------------------------------------------------------------- Velero
class VeleroRestoreInput(Contract):
    runbook: Runbook
    region: str
    # Deterministic, derived from the workflow id, so a retry finds the object it created.
    restore_name: str
    timeout_seconds: float = 1800.0
    speed: float = 1.0


class VeleroRestoreResult(Contract):
    name: str
    phase: str
    errors: int = 0
    warnings: int = 0
    created: bool  # False when the Restore already existed (a retry)
    # The Backup restored (a schedule's latest, as Velero chose it) and when it completed;
    # empty / None in histories from before they were recorded.
    backup: str = ""
    backup_completed_at: datetime | None = None
    waits: list[ScaledWait] = Field(default_factory=list)


class VeleroBackupInput(Contract):
    runbook: Runbook
    region: str  # where the Restore would be created (the region being brought up)


class VeleroBackupInfo(Contract):
    """The Backup a restore of the runbook's `backups.velero.backup` would use now: that
    Backup itself, or the Schedule's newest Completed one. For the RPO check."""

    name: str
    schedule: str | None = None  # the Schedule it came from, when the runbook names one
    phase: str
    completed_at: datetime | None  # status.completionTimestamp


# --------------------------------------------------------------------------------- probes
class WarmupInput(Contract):
    runbook: Runbook
    region: str
    speed: float = 1.0  # divides the ready_when timeouts (a rehearsal's), never request latency


class WarmupJudged(Contract):
    """How a warm-up entry with ready_when ended: its latest `window` requests' p95 time to
    first byte against the limit, after `requests` sent in `seconds`."""

    request: str  # e.g. "POST /v2/models/llm/generate_stream"
    requests: int
    window: int
    p95_ms: float
    limit_ms: float
    seconds: float

    def evidence(self, region: str) -> CheckEvidence:
        """e.g. "us-west-2: warm-up POST /v2/models/llm/infer p95 time to first byte":
        "412ms over the latest 20 of 64 requests (limit 800ms) in 3.1s"."""
        return CheckEvidence(
            check=f"{region}: warm-up {self.request} p95 time to first byte",
            passed=self.p95_ms <= self.limit_ms,
            observed=(
                f"{self.p95_ms:.0f}ms over the latest {self.window} of {self.requests} requests "
                f"(limit {self.limit_ms:.0f}ms) in {self.seconds:.1f}s"
            ),
        )


class WarmupResult(Contract):
    region: str
    requests: int
    failures: int
    p50_ms: float
    p99_ms: float
    judged: list[WarmupJudged] = Field(default_factory=list)  # the entries with ready_when
    # Epoch seconds (the worker's clock): when every model version the region serves first
    # answered ready during the warm-up (None: not seen), and when the warm-up ended.
    versions_ready_at: float | None = None
    ended_at: float | None = None


class HealthInput(Contract):
    runbook: Runbook
    region: str
    speed: float = 1.0
    # None: the runbook's gate (health.consecutive passing rounds within health.timeout).
    # N: a short check, N rounds at most, passing only if each of them passes.
    rounds: int | None = None


class CheckEvidence(Contract):
    check: str  # e.g. "GET /v2/health/ready" or the Prometheus check's name
    passed: bool
    observed: str  # status code, value, or error text


class HealthResult(Contract):
    region: str
    passed: bool
    rounds: int
    consecutive: int
    seconds: float
    evidence: list[CheckEvidence]  # the last round's evidence per check
    # When the gate failed: one sentence naming the region and each check's last failing
    # evidence, for the run report and the operator.
    summary: str = ""
    waits: list[ScaledWait] = Field(default_factory=list)


class AnalyseInput(Contract):
    runbook: Runbook
    region: str
    window_seconds: float  # the bake just finished, already divided by speed
    # Rehearsal speed: window x speed is the bake at speed 1, whose Prometheus ranges the
    # analysis lets run in real time (drpilot/domain/measurement.py); the runbook's error and
    # latency limits judge at any speed (a rehearsal compresses waits, not requests).
    speed: float = 1.0


# The longest an analysis samples a region's own /metrics (simulated seconds; at speed S it
# samples this / S): shared with the RTO projection, which counts it at this length.
ANALYSIS_SAMPLE_MAX_SECONDS = 30.0
ANALYSIS_SAMPLE_MIN_SECONDS = 1.0


class AnalyseResult(Contract):
    region: str
    healthy: bool
    requests: int
    error_rate: float
    p99_ms: float
    evidence: list[CheckEvidence]
    sample_seconds: float = 0.0  # how long it sampled /metrics (0: it asked Prometheus)
    # How long a rehearsal let the step run on, in real time, before asking Prometheus (its
    # ranges hold only this step's traffic then); nothing at speed 1, where the bake did.
    held_seconds: float = 0.0


class RunEvent(Contract):
    """One thing a run wants people to hear about (spec.notifications)."""

    event: RunEventName
    run_id: str
    runbook: str
    action: str
    at: datetime
    # One line a person acts on: who started it, the approve command, the RTO verdict.
    text: str
    trigger: str = ""
    requested_by: str = ""
    details: dict[str, str] = Field(default_factory=dict)


class NotifyInput(Contract):
    notifier: Notifier
    event: RunEvent


class NotifyResult(Contract):
    delivered: bool
    status: int | None = None
    target: str = ""  # scheme://host of the receiver: never the path, which may hold a secret


# --------------------------------------------------------------------------------- drills
class FiringAlertsInput(Contract):
    runbook: Runbook  # its guardrails.blocking_alerts / blocking_queries, spec.drills.alertmanager / prometheus


class FiringAlerts(Contract):
    # Blocking conditions true now: alert names firing (active, not silenced or inhibited), then
    # "query EXPR (N series)" for each blocking query returning a series.
    firing: list[str]
    source: str  # the Alertmanager and / or Prometheus asked, or "" when the runbook names no condition
    sandbox: bool  # the worker points at a sandbox twin (DRPILOT_SANDBOX=1): rehearsals need one


class EvidenceInput(Contract):
    runbook: Runbook  # its spec.drills.evidence prefix
    name: str  # file name under the prefix, e.g. llm-inference/20261205T100000Z-drill.json
    body: str  # the drill's result as JSON


class EvidenceResult(Contract):
    uri: str  # s3://bucket/key written


class LastDrillInput(Contract):
    runbook: Runbook  # its spec.drills.evidence


class MeasuredColdStart(Contract):
    """The cold starts the newest drill that measured any measured, from its evidence pack."""

    drill_id: str
    at: datetime  # when that drill started
    speed: float  # its failover's: a rehearsal's seconds times this are the speed-1 equivalent
    cold_starts: list[ColdStart]


class LastDrill(Contract):
    """The runbook's newest drill that completed, from its evidence packs; None: none did.
    `cold_start`: the newest drill whose failover measured a cold start (completed or not)."""

    completed_at: datetime | None = None
    drill_id: str = ""
    uri: str = ""
    cold_start: MeasuredColdStart | None = None


# ------------------------------------------------------------------ data-tier blocks
# Unlike the serving tier's activities these take explicit fields, not the runbook: the
# engine maps a block (spec.blocks[]) and the run's {source} / {target} to them, so the
# activities know nothing of stages or directions (activities/blocks/).
class AuroraReadInput(Contract):
    """An `aurora_global` block's preflight: read-only."""

    block: str  # the block's name, for messages
    global_cluster: str  # GlobalClusterIdentifier
    members: dict[str, str]  # region -> the member DB cluster's ARN there: the regions the run uses
    target: str | None = None  # the region to become the writer: its member's lag is `lag_seconds`


class AuroraMember(Contract):
    region: str
    arn: str
    in_global_cluster: bool  # listed among the global cluster's members
    writer: bool
    # DescribeDBClusters' Status in its own region ("available", ...), "unreachable" when that
    # region's RDS endpoint does not answer.
    status: str
    # AuroraGlobalDBReplicationLag (CloudWatch, the secondary's region), seconds; None for the
    # writer or when no datapoint was published in the last five minutes.
    lag_seconds: float | None = None


class AuroraState(Contract):
    block: str
    global_cluster: str
    exists: bool
    status: str = ""  # the global cluster's Status: available, switching-over, failing-over, ...
    writer_region: str | None = None  # the asked region whose member writes now (None: another, or none)
    writer_arn: str = ""
    members: list[AuroraMember] = Field(default_factory=list)
    # FailoverState of a switchover / failover in progress: "switching-over to ARN", or "".
    operation: str = ""
    lag_seconds: float | None = None  # the target's member's lag (the largest secondary's without a target)
    problems: list[str] = Field(default_factory=list)  # what makes the block not ready now; [] = ready


class AuroraSwitchInput(Contract):
    block: str
    global_cluster: str
    members: dict[str, str]  # region -> member DB cluster ARN
    source: str  # the region left (its member is expected to write now)
    target: str  # the region whose member becomes the writer
    # graceful: SwitchoverGlobalCluster (no data loss), refused above max_lag_seconds, and a
    # FailoverGlobalCluster with AllowDataLoss when the source region's RDS does not answer.
    # ungraceful: FailoverGlobalCluster with AllowDataLoss at once.
    mode: Literal["graceful", "ungraceful"] = "graceful"
    max_lag_seconds: float | None = None  # the block's max_lag; None: no limit
    timeout_seconds: float = 1800.0  # for the target to be the available writer (simulated, like every wait)
    speed: float = 1.0


class AuroraSwitchResult(Contract):
    block: str
    global_cluster: str
    writer_before: str  # region (or the writer's ARN when it is no asked region's member)
    writer_after: str  # region: the target
    # already: the target was the writer (nothing asked); switchover / failover: what was asked
    # (by this attempt or an earlier one of the same activity).
    mode: Literal["already", "switchover", "failover"]
    data_loss_allowed: bool
    # The target's replication lag just before the switch: RPO evidence (a switchover
    # synchronises first and loses nothing; a failover may lose up to about this much).
    lag_seconds: float | None
    reason: str  # why this mode, e.g. "us-east-1's RDS endpoint does not answer"
    seconds: float  # from the request until the target was the available writer
    waits: list[ScaledWait] = Field(default_factory=list)


class JobPreflightInput(Contract):
    """A `kubernetes_job` block's preflight: a server-side dry-run create of its Job (the
    namespace exists, drpilot may create Jobs there, the manifest is valid): no effect."""

    run_id: str
    block: str
    region: str  # for messages
    context: str  # the kubeconfig context of the region's cluster
    namespace: str
    manifest: dict[str, Any]  # a batch/v1 Job (the block's template or inline job)


class JobPreflight(Contract):
    block: str
    region: str
    job: str  # the Job's name this run would use
    reachable: bool  # the cluster answered
    problems: list[str] = Field(default_factory=list)  # [] = ready


class JobRunInput(JobPreflightInput):
    timeout_seconds: float = 300.0  # simulated (divided by speed), from the Job's creation
    speed: float = 1.0
    log_lines: int = 20  # how many of the pod's last log lines are kept


class JobRunResult(Contract):
    block: str
    region: str
    namespace: str
    job: str
    created: bool  # False: an earlier attempt had created it (found, not duplicated)
    pod: str  # the pod whose logs are kept ("" when none could be found)
    log_tail: list[str] = Field(default_factory=list)
    seconds: float = 0.0  # from this attempt's start until the Job completed
    waits: list[ScaledWait] = Field(default_factory=list)


# -------------------------------------------------------- what only the front door answers
# A drill claims its runbook at admission as every front door does, and a scheduled readiness
# check asks for its schedule's previous verdict: activities/front_door.py.
Trigger = Literal["cli", "alert", "drill", "console"]


class Claim(Contract):
    """A front door asking to run `action` on `runbook` (workflows/admission.py)."""

    run_id: str  # the workflow id the run gets
    action: str  # failover, failback, drill
    runbook: str
    dns_records: list[str]  # provider/zone/name of every record the run would move
    # What makes two requests the same run: region, targets, strategy, speed.
    request: dict[str, str]
    trigger: Trigger = "cli"
    requested_by: str = ""
    reason: str = ""


class Holder(Contract):
    claim: Claim
    since: datetime


class Admission(Contract):
    admitted: bool  # the claim now holds its runbook and records: start the run
    attach: bool = False  # the same request already holds them: attach to its run
    holder: Holder | None = None  # who holds them (when not admitted, or attached)
    conflict: str = ""  # what is shared with the holder: the runbook, or a DNS record
    differences: list[str] = Field(default_factory=list)  # same run id, different request
    # A guarded claim (GuardedClaims) that would start a new run and was not admitted: why,
    # as a code (cooldown, circuit_breaker, or the front door's own refusal code) and a sentence.
    guard: str = ""
    reason: str = ""


class Claims(Contract):
    """Many claims at once (an evacuation): admitted in one update, each judged in order as
    a claim of its own would be, so a fleet waits for one round trip instead of one each."""

    claims: list[Claim]


class Admissions(Contract):
    answers: list[Admission]  # one per claim, in order


class GuardedClaim(Contract):
    """An alert's claim: judged as a Claim is; a claim that would start a new run must also
    pass the front door's own check (`refusal`, when it found a reason not to start), the
    runbook's cooldown after its last run ended, and the circuit breaker."""

    claim: Claim
    cooldown: timedelta = timedelta(0)  # the runbook's guardrails.cooldown
    refusal_code: str = ""  # e.g. only_serving, dns_unreadable; "" when the front door found none
    refusal: str = ""


class Breaker(Contract):
    """At most `max_runs` runs started through guarded claims in any sliding `window`."""

    max_runs: int
    window: timedelta


class GuardedClaims(Contract):
    """Alerts' claims at once (the webhook's concurrent alerts), in one update, judged in
    order; the breaker and cooldowns are held by admission, so every webhook replica shares them."""

    claims: list[GuardedClaim]
    breaker: Breaker
    # When the front door received them, by its clock: what the cooldown and the breaker's
    # window are judged at (a replica's clock skew of s moves their edges by s).
    at: datetime


class ReadinessCheck(Contract):
    name: str  # e.g. "us-west-2: cluster", "us-west-2: llm-7b 2024-01-15 artifacts"
    ready: bool
    detail: str = ""


class ReadinessResult(Contract):
    """Whether a failover (primary -> standby) and a failback (back) would work, right now."""

    runbook: str
    ready: bool
    checks: list[ReadinessCheck]
    checked_at: datetime
    notes: list[str] = Field(default_factory=list)  # who was told of a change, or why nobody was


class PreviousVerdictInput(Contract):
    runbook: str
    run_id: str  # the asking run, never its own previous (scheduled ids can repeat within a second)


class PreviousVerdict(Contract):
    result: ReadinessResult | None = None  # None: no earlier finished firing


class ErrorType:
    """The type of every ApplicationError an activity (or a drill) raises, named for what
    happened; workflows and the front door match on these constants, never on literals.
    The values are what Temporal records in histories: never change one."""

    ACCESS_DENIED = "AccessDenied"
    ADMISSION_UNAVAILABLE = "AdmissionUnavailable"
    ALERTS_UNREACHABLE = "AlertsUnreachable"
    BLOCK_HTTP_REFUSED = "BlockHttpRefused"
    BLOCK_HTTP_RETRY = "BlockHttpRetry"
    BLOCK_HTTP_UNCONFIGURED = "BlockHttpUnconfigured"
    ANALYSIS_UNAVAILABLE = "AnalysisUnavailable"
    AURORA_LAG_TOO_HIGH = "AuroraLagTooHigh"
    AURORA_BUSY = "AuroraBusy"
    AURORA_MISCONFIGURED = "AuroraMisconfigured"
    AURORA_SWITCH_CANCELLED = "AuroraSwitchCancelled"
    AURORA_SWITCH_TIMEOUT = "AuroraSwitchTimeout"
    AURORA_UNAVAILABLE = "AuroraUnavailable"
    ARTIFACTS_NOT_RESTORABLE = "ArtifactsNotRestorable"
    ARTIFACTS_STILL_INVALID = "ArtifactsStillInvalid"
    CLOUD_DNS_ACCESS_DENIED = "CloudDnsAccessDenied"
    CLOUD_DNS_INVALID_CHANGE = "CloudDnsInvalidChange"
    CLOUD_DNS_NO_CREDENTIALS = "CloudDnsNoCredentials"
    DNS_CHANGE_NOT_FOUND = "DnsChangeNotFound"
    DNS_CHANGE_PENDING = "DnsChangePending"
    DNS_CONCURRENT_CHANGE = "DnsConcurrentChange"
    DNS_CONTROL_PLANE_DOWN = "DnsControlPlaneDown"
    DNS_CONTROLS_UNAVAILABLE = "DnsControlsUnavailable"
    DNS_CONTROLS_REFUSED = "DnsControlsRefused"
    DNS_GUARDRAIL = "DnsGuardrail"
    DNS_PROVIDER_BUSY = "DnsProviderBusy"
    DNS_PROVIDER_UNREACHABLE = "DnsProviderUnreachable"
    DNS_WEIGHTS_INVALID = "DnsWeightsInvalid"
    DNS_ZONE_AMBIGUOUS = "DnsZoneAmbiguous"
    DNS_ZONE_NOT_FOUND = "DnsZoneNotFound"
    DNS_SAFETY_RULE = "DnsSafetyRule"
    DRILL_FAILED = "DrillFailed"
    DRILL_UNCONFIGURED = "DrillUnconfigured"
    EVIDENCE_UNWRITABLE = "EvidenceUnwritable"
    GCS_NO_CREDENTIALS = "GcsNoCredentials"
    GCS_UNAVAILABLE = "GcsUnavailable"
    GCS_UNREACHABLE = "GcsUnreachable"
    EVIDENCE_UNREADABLE = "EvidenceUnreadable"
    INVALID_INPUT = "InvalidInput"
    JOB_FAILED = "JobFailed"
    JOB_NAME_TAKEN = "JobNameTaken"
    JOB_TIMEOUT = "JobTimeout"
    KUBE_CONFIG_INVALID = "KubeConfigInvalid"
    KUBE_CONFLICT = "KubeConflict"
    KUBE_CONTEXT_MISSING = "KubeContextMissing"
    KUBE_FORBIDDEN = "KubeForbidden"
    KUBE_INVALID = "KubeInvalid"
    KUBE_NOT_FOUND = "KubeNotFound"
    KUBE_THROTTLED = "KubeThrottled"
    KUBE_TLS = "KubeTLS"
    KUBE_UNAUTHORIZED = "KubeUnauthorized"
    KUBE_UNAVAILABLE = "KubeUnavailable"
    KUBE_UNREACHABLE = "KubeUnreachable"
    NOTIFY_REFUSED = "NotifyRefused"
    NOTIFY_RETRY = "NotifyRetry"
    NOTIFY_UNCONFIGURED = "NotifyUnconfigured"
    NOTIFY_UNREACHABLE = "NotifyUnreachable"
    NO_SUCH_BUCKET = "NoSuchBucket"
    PODS_NOT_READY = "PodsNotReady"
    ROUTE53_NO_CREDENTIALS = "Route53NoCredentials"
    S3_CHANGED = "S3Changed"
    S3_NO_CREDENTIALS = "S3NoCredentials"
    S3_UNAVAILABLE = "S3Unavailable"
    S3_UNREACHABLE = "S3Unreachable"
    SOURCE_NOT_HEALTHY = "SourceNotHealthy"
    SYNC_INCOMPLETE = "SyncIncomplete"
    UNKNOWN_MODEL = "UnknownModel"
    UNKNOWN_REGION = "UnknownRegion"
    VELERO_BACKUP_NOT_FOUND = "VeleroBackupNotFound"
    VELERO_NOT_CONFIGURED = "VeleroNotConfigured"
    VELERO_RESTORE_DELETED = "VeleroRestoreDeleted"
    VELERO_RESTORE_NAME_TAKEN = "VeleroRestoreNameTaken"
    VELERO_RESTORE_TIMEOUT = "VeleroRestoreTimeout"
    VELERO_RESTORE_VANISHED = "VeleroRestoreVanished"
    WARMUP_FAILED = "WarmupFailed"
    WARMUP_NOT_FAST = "WarmupNotFast"

    @staticmethod
    def rds_refused(code: str) -> str:
        """RDS refused a request with error `code` (AccessDenied, InvalidGlobalClusterStateFault, ...)."""
        return f"Rds{code}"

    @staticmethod
    def route53_refused(code: str) -> str:
        """Route53 refused a request with error `code` (InvalidChangeBatch, AccessDenied, ...)."""
        return f"Route53{code}"

    @staticmethod
    def s3_refused(code: str) -> str:
        """S3 refused a request with error `code`, or its HTTP status when it gave none."""
        return f"S3{code}"

    @staticmethod
    def gcs_refused(status: int) -> str:
        """Cloud Storage refused a request with HTTP `status`."""
        return f"Gcs{status}"

    @staticmethod
    def velero_restore_ended(phase: str) -> str:
        """A Velero Restore that ended in `phase` (Failed, PartiallyFailed, ...)."""
        return f"VeleroRestore{phase}"

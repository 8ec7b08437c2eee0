"""The runbook: one environment's regions, DNS, workloads, models, backups, checks and goals.

A runbook is data, validated once at the front door (CLI, webhook, schedule) and passed to
the workflows as a typed input. Every model is frozen and forbids unknown keys, so a typo
in a runbook is an error at load time, never a silently ignored setting at 3 a.m.

Loading (`load_runbook`) lives in `drpilot.runbook_loader`; this module is the model only,
so workflows can import it without YAML.
"""

from __future__ import annotations

import hashlib
import typing
from datetime import timedelta
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, model_validator
from pydantic_core import PydanticCustomError

from drpilot.domain.blocks import Block, block_problems
from drpilot.domain.durations import Duration, format_duration
from drpilot.domain.fields import (  # noqa: F401 - the runbook's field types, imported from here by its users
    DnsName,
    EnvName,
    Fraction,
    Frozen,
    HttpUrl,
    KubeName,
    NonNegativeInt,
    PositiveInt,
    PositiveNumber,
    RegionName,
    StorageUri,
    Text,
    UrlPath,
    _pattern,
)

# ---------------------------------------------------------------------------------------
# The sections of a runbook.


class Metadata(Frozen):
    name: KubeName = Field(description="Runbook name; part of every workflow id (one run per name and action).")
    owner: Text | None = Field(None, description="Who is paged about this runbook, e.g. ml-platform-oncall.")
    description: Text | None = None
    labels: dict[str, str] = Field(default_factory=dict)


class Objectives(Frozen):
    rto: Duration = Field(description="Recovery time objective: trigger to healthy serving in the target region.")
    rpo: Duration = Field(description="Recovery point objective: how old the restored state may be.")
    rpo_policy: Literal["fail", "warn"] = Field(
        "fail",
        description="When preflight finds the DR side older than the RPO: fail (change nothing) or warn and go on.",
    )


class Role(StrEnum):
    primary = "primary"  # serves traffic; home region that failback returns to
    active = "active"  # also serves traffic in normal operation (active-active)
    standby = "standby"  # warm standby: scaled to standby replicas, no traffic


class Kube(Frozen):
    context: Text = Field(description="kubeconfig context of this region's cluster.")


class Region(Frozen):
    role: Role = Field(description="primary: serves, and failback returns here; active: also serves (active-active); standby: no traffic until a failover.")
    endpoint: HttpUrl = Field(description="The region's own serving endpoint (bypassing global DNS), for probes and warm-up.")
    kube: Kube
    capacity: PositiveNumber = Field(
        1.0, description="Relative serving capacity; a failed region's weight is shared in proportion."
    )
    prometheus: HttpUrl | None = Field(None, description="Prometheus for this region's health and shift analysis.")


class DnsProvider(StrEnum):
    route53 = "route53"
    clouddns = "clouddns"


class RecordType(StrEnum):
    A = "A"
    AAAA = "AAAA"
    CNAME = "CNAME"


class DnsRecord(Frozen):
    name: DnsName = Field(description="Fully qualified record name, inside the zone.")
    type: RecordType = Field(RecordType.CNAME, description="Record type; every region's target has this type.")
    ttl: PositiveInt = Field(60, description="Seconds; the switch waits this long after the change is applied.")
    targets: dict[RegionName, Text] = Field(description="Per region: the value this record points to there.")
    set_identifiers: dict[RegionName, Text] = Field(
        default_factory=dict, description="Weighted-record identifiers; default is the region name."
    )

    def set_identifier(self, region: str) -> str:
        return self.set_identifiers.get(region, region)


class DnsSwitch(StrEnum):
    weights = "weights"
    routing_controls = "routing_controls"


ArcArn = Annotated[
    str,
    BeforeValidator(
        _pattern(
            r"arn:aws[a-z-]*:route53-recovery-control::\d{12}:controlpanel/[0-9a-zA-Z]+(/(routingcontrol|safetyrule)/[0-9a-zA-Z]+)?",
            "a Route 53 ARC ARN (arn:aws:route53-recovery-control::ACCOUNT:controlpanel/ID[/routingcontrol/ID])",
        )
    ),
]


class ClusterEndpoint(Frozen):
    url: HttpUrl = Field(description="One of the ARC cluster's regional endpoints (`aws route53-recovery-control-config describe-cluster`).")
    region: RegionName = Field(description="The AWS region that endpoint is in (as describe-cluster lists it), named in messages; every request is signed for us-west-2, as AWS documents for ARC's API.")


class RoutingControl(Frozen):
    arn: ArcArn = Field(description="The region's routing control.")
    health_check: Text = Field(description="Id of the Route 53 health check (type RECOVERY_CONTROL) tied to that control; the region's record sets carry it.")


class RoutingControls(Frozen):
    cluster_endpoints: list[ClusterEndpoint] = Field(
        min_length=1, description="The cluster's regional endpoints, tried in turn: the emergency path never asks the control plane for them."
    )
    controls: dict[RegionName, RoutingControl] = Field(description="Per region: its routing control and health check.")
    control_panel: ArcArn | None = Field(None, description="The control panel holding the controls; readiness lists it to find each control.")
    safety_rules: dict[Text, ArcArn] = Field(
        default_factory=dict,
        description="Safety rules by name -> ARN: how a refusal is named and what `--override-safety-rule NAME` overrides.",
    )


class Dns(Frozen):
    provider: DnsProvider = Field(description="Who serves the zone: AWS Route53 or Google Cloud DNS.")
    switch: DnsSwitch = Field(
        DnsSwitch.weights,
        description="How a failover moves traffic: weights (ChangeResourceRecordSets, Route 53's control plane) or routing_controls (Route 53 ARC, its data plane).",
    )
    routing_controls: RoutingControls | None = Field(None, description="Route 53 ARC routing controls (switch: routing_controls).")
    zone: DnsName = Field(description="The zone's DNS name, e.g. example.com.")
    zone_id: Text | None = Field(None, description="Route53 hosted zone id; looked up by name when omitted.")
    project: Text | None = Field(None, description="Google Cloud project (clouddns only).")
    managed_zone: Text | None = Field(None, description="Cloud DNS managed zone name (clouddns only).")
    records: list[DnsRecord] = Field(min_length=1)


class Replicas(Frozen):
    active: PositiveInt = Field(description="Replicas while the region serves traffic.")
    standby: NonNegativeInt = Field(description="Replicas while it stands by.")


class Workload(Frozen):
    namespace: KubeName
    deployment: KubeName = Field(description="apps/v1 Deployment scaled by failover and failback.")
    replicas: Replicas
    regions: list[RegionName] | None = Field(None, description="Regions that run it; all when omitted.")


class Model(Frozen):
    name: Text
    version: Text = Field(description="Model version; quote it in YAML (\"2024-01-15\").")
    artifacts: dict[RegionName, StorageUri] = Field(
        description="Per region: the s3:// or gs:// prefix holding this version (each region its own store)."
    )
    archive: StorageUri | None = Field(
        None,
        description="Archive prefix for emergency restore: S3 Glacier (restored first) or Cloud Storage "
        "Archive / Coldline (read at once, retrieval billed).",
    )
    manifest: Text = Field("manifest.json", description="Checksum manifest file under each prefix.")
    verify: Literal["fast", "deep"] = Field(
        "fast",
        description="fast: confirm each file by size and the checksum its store already holds (S3's checksums, "
        "Cloud Storage's CRC32C / MD5; reads a body only where the store has none); deep: also read and hash every file.",
    )


class Action(StrEnum):
    failover = "failover"
    failback = "failback"


class Velero(Frozen):
    backup: KubeName = Field(description="Velero Backup (or schedule's latest backup) to restore from.")
    namespaces: list[KubeName] = Field(min_length=1, description="Namespaces restored from the backup.")
    namespace: KubeName = Field("velero", description="Namespace Velero is installed in.")
    restore_on: list[Action] = Field(
        default_factory=lambda: [Action.failback],
        description="Procedures that restore this backup into the region being brought up.",
    )


class Backups(Frozen):
    velero: Velero | None = None


class ReadyWhen(Frozen):
    """When a warm-up is done: judged by how fast its latest requests were, not by how many were sent."""

    p95_time_to_first_byte: Duration = Field(
        description=(
            "The warm-up ends once the 95th percentile of its latest requests' time to first byte (of "
            "the body: the first streamed chunk of a streaming completion) is at most this."
        ),
    )
    window: PositiveInt = Field(20, description="How many of the latest requests are judged.")
    timeout: Duration = Field(
        timedelta(minutes=10),
        description="The warm-up fails when its requests are not fast enough by then (divided by a rehearsal's speed, never below 30s or this timeout when shorter).",
    )


class Warmup(Frozen):
    model: Text | None = Field(None, description="Model this request warms (a name from spec.models).")
    path: UrlPath = Field(description="Inference path on the region's endpoint.")
    method: Literal["GET", "POST"] = "POST"
    body: Any = Field(None, description="JSON request body (e.g. a KServe v2 inference request).")
    requests: PositiveInt = Field(10, description="Requests sent to warm caches and kernels.")
    concurrency: PositiveInt = Field(4, description="Requests in flight at once.")
    timeout: Duration = Field(timedelta(seconds=30), description="Per request.")
    ready_when: ReadyWhen | None = Field(
        None,
        description=(
            "Send this request until the latest ones are fast enough (or fail at ready_when.timeout) "
            "instead of exactly `requests` times."
        ),
    )


class HttpCheck(Frozen):
    path: UrlPath = Field(description="Path probed on the region's endpoint.")
    expect: PositiveInt = Field(200, description="HTTP status that counts as a pass.")
    timeout: Duration = timedelta(seconds=5)


class PromCheck(Frozen):
    name: Text
    query: Text = Field(description="PromQL; {region} is replaced by the region's name.")
    max: float | None = Field(None, description="Fails when the value is above.")
    min: float | None = Field(None, description="Fails when the value is below.")


class Health(Frozen):
    http: list[HttpCheck] = Field(default_factory=lambda: [HttpCheck(path="/v2/health/ready")])
    prometheus: list[PromCheck] = Field(default_factory=list)
    timeout: Duration = Field(timedelta(seconds=60), description="The gate fails when not passed by then.")
    interval: Duration = Field(timedelta(seconds=5), description="Time between rounds of checks.")
    consecutive: PositiveInt = Field(3, description="Consecutive passing rounds needed.")
    scrape_interval: Duration = Field(
        timedelta(seconds=30),
        description=(
            "How often the regions' Prometheus scrapes the model servers (its scrape_interval). "
            "A Prometheus check reflects a change only after its longest range plus one scrape: "
            "a rehearsal gives a gate, a soak or a shift analysis judged by such checks at least "
            "that long in real time, whatever its speed."
        ),
    )


class Rollback(Frozen):
    max_error_rate: Fraction = Field(0.01, description="Error ratio above which a shift step rolls back.")
    max_p99_latency: Duration = Field(timedelta(seconds=2), description="p99 latency above which a shift step rolls back.")
    min_requests: NonNegativeInt = Field(
        0,
        description=(
            "Fewer requests than this to a region in a step's window is no evidence: the analysis "
            "then judges probe requests it sends itself (this many, at least 100). A small step "
            "(a few percent of a quiet service's traffic) often ends here."
        ),
    )


class TrafficShift(Frozen):
    steps: list[PositiveInt] = Field(
        default_factory=lambda: [10, 25, 50, 75, 100],
        description=(
            "Each step is a percent of the way from the weights when the shift begins to the "
            "home weights; ends at 100. With two regions that is the returning region's share of "
            "all traffic; with more, each region's weight moves that part of the way, so a step of "
            "10 toward a home share of 50 gives the returning region 5 % of all traffic "
            "(`drpilot runbook plan` prints every region's weights at every step)."
        ),
    )
    bake: Duration = Field(timedelta(minutes=15), description="Time at each step before it is analysed.")
    rollback: Rollback = Field(default_factory=Rollback)
    analysis: list[PromCheck] = Field(default_factory=list, description="Extra Prometheus checks per step.")


class ApprovalPolicy(StrEnum):
    always = "always"
    never = "never"
    when_auto_triggered = "when-auto-triggered"


class Approvals(Frozen):
    failover: ApprovalPolicy = Field(ApprovalPolicy.when_auto_triggered, description="When a failover waits for `drpilot approve`.")
    failback: ApprovalPolicy = Field(ApprovalPolicy.never, description="When a failback waits for `drpilot approve`.")
    timeout: Duration = Field(timedelta(minutes=10), description="How long an approval is awaited.")
    on_timeout: Literal["abort", "proceed"] = Field(
        "abort", description="What an unanswered approval does when its timeout passes."
    )
    distinct_approver: bool = Field(
        True,
        description="Four eyes: a run a person started (from the CLI or the console) cannot be approved by the identity "
        "that started it.",
    )


class Guardrails(Frozen):
    min_healthy_targets: PositiveInt = Field(1, description="DNS never ends with fewer weighted targets than this.")
    auto_failover: bool = Field(True, description="Whether alerts may start a failover at all.")
    cooldown: Duration = Field(
        timedelta(minutes=30), description="After a run of an action ends, alerts cannot start it again for this long."
    )
    capacity: Literal["fail", "warn"] = Field(
        "fail",
        description="A graceful failover whose targets cannot hold the workloads' pods (GPUs, cpu, memory, even after "
        "their autoscaler's scale-out) stops in preflight before any change (fail) or says so and goes on (warn). "
        "An ungraceful failover always warns and goes on: the failed region is dark, partial capacity beats none.",
    )
    blocking_alerts: list[Text] = Field(default_factory=list, description="Alert names that stop a drill from starting.")
    blocking_queries: list[Text] = Field(
        default_factory=list,
        description="PromQL expressions, written like an alert rule's expr, that stop a drill from starting (and end its soak) "
        "while any of them returns a series; read from spec.drills.prometheus.",
    )


RunEventName = Literal["started", "approval_needed", "held", "rolled_back", "failed", "completed", "readiness_changed"]
RUN_EVENTS: tuple[str, ...] = typing.get_args(RunEventName)


class Notifier(Frozen):
    kind: Literal["json", "slack", "pagerduty"] = Field(
        "json", description="json: the event as a JSON object; slack: a Slack-compatible incoming webhook ({\"text\": ...}, "
        "with Approve / Reject buttons on approval_needed); pagerduty: PagerDuty Events API v2 (trigger on approval_needed, "
        "held, rolled_back, failed; resolve on completed; one dedup key per run)."
    )
    url: HttpUrl | None = Field(
        None, description="Where events are POSTed. Prefer url_env for URLs that carry a secret. pagerduty: the Events API "
        "(default https://events.pagerduty.com/v2/enqueue)."
    )
    url_env: EnvName | None = Field(None, description="Worker environment variable holding the URL (e.g. a Slack webhook URL).")
    routing_key_env: EnvName | None = Field(
        None, description="pagerduty: the worker environment variable holding the service's Events API v2 integration key."
    )
    events: list[RunEventName] = Field(
        default_factory=lambda: list(RUN_EVENTS), description="Which run events go here; all when omitted."
    )


class Drills(Frozen):
    evidence: StorageUri = Field(
        description="s3:// or gs:// prefix every drill writes its evidence pack to (one JSON per drill); `drpilot drill history` reads it."
    )
    alertmanager: HttpUrl | None = Field(
        None, description="Alertmanager whose firing alerts named in guardrails.blocking_alerts keep a drill from starting."
    )
    prometheus: HttpUrl | None = Field(
        None, description="Prometheus that evaluates guardrails.blocking_queries (its /api/v1/query)."
    )
    soak: Duration = Field(
        timedelta(minutes=10), description="How long a drill serves from the standby before failing back."
    )
    soak_interval: Duration = Field(
        timedelta(minutes=1), description="How often the soak checks the standby's health and the blocking alerts."
    )
    cadence: Duration | None = Field(
        None, description="How often a drill must complete (e.g. 90d): readiness is not ready when no drill of the runbook "
        "completed within it (read from the evidence packs)."
    )


class Spec(Frozen):
    objectives: Objectives
    regions: dict[RegionName, Region] = Field(min_length=2)
    dns: Dns
    workloads: list[Workload] = Field(default_factory=list)
    models: list[Model] = Field(default_factory=list)
    backups: Backups = Field(default_factory=Backups)
    warmup: list[Warmup] = Field(default_factory=list)
    health: Health = Field(default_factory=Health)
    traffic_shift: TrafficShift = Field(default_factory=TrafficShift)
    approvals: Approvals = Field(default_factory=Approvals)
    guardrails: Guardrails = Field(default_factory=Guardrails)
    notifications: list[Notifier] = Field(
        default_factory=list, description="Where run events go (started, approval needed, held, rolled back, failed, completed; a scheduled readiness check that changed its verdict)."
    )
    drills: Drills | None = Field(None, description="Game-day drills: where their evidence goes, what blocks them, how long they soak.")
    blocks: list[Block] = Field(
        default_factory=list,
        description="Steps beyond the serving tier (the data tier, your own calls and Jobs, the old region's shutdown, a "
        "person's confirmation) at named stages of the procedures, in order within a stage.",
    )


Loc = tuple[str | int, ...]


class Runbook(Frozen):
    apiVersion: Literal["drpilot/v1"] = Field(description="Schema version of this file.")
    kind: Literal["Runbook"] = Field(description="Always Runbook.")
    metadata: Metadata = Field(description="Who and what this runbook is.")
    spec: Spec = Field(description="The environment: everything a procedure acts on.")

    # ------------------------------------------------------------------ cross-field rules
    @model_validator(mode="after")
    def _rules(self) -> Runbook:
        problems = list(_cross_field_problems(self))
        if problems:
            # One error carrying every problem with its own location; the loader spreads
            # them back onto their lines in the file.
            raise PydanticCustomError(
                "runbook_rules",
                "{summary}",
                {"summary": "; ".join(f"{'.'.join(map(str, loc))}: {msg}" for loc, msg in problems), "problems": problems},
            )
        return self

    # ------------------------------------------------------------------ views
    @property
    def name(self) -> str:
        return self.metadata.name

    def digest(self) -> str:
        """The runbook's content as validated (defaults filled in, durations normalized), hashed:
        what an evidence pack records so an auditor can tell which runbook a drill exercised."""
        return "sha256:" + hashlib.sha256(self.model_dump_json().encode()).hexdigest()

    @property
    def regions(self) -> dict[str, Region]:
        return self.spec.regions

    @property
    def primary(self) -> str:
        return next(n for n, r in self.spec.regions.items() if r.role is Role.primary)

    def normal_weights(self) -> dict[str, int]:
        """DNS weights in normal operation: serving regions share 100 by capacity."""
        serving = {n: r.capacity for n, r in self.spec.regions.items() if r.role is not Role.standby}
        return split_weights(serving, {n: 0 for n in self.spec.regions})

    def workloads_in(self, region: str) -> list[Workload]:
        return [w for w in self.spec.workloads if w.regions is None or region in w.regions]


def split_weights(capacity: dict[str, float], base: dict[str, int]) -> dict[str, int]:
    """Share 100 among `capacity`'s regions in proportion (largest remainder), others from base."""
    total = sum(capacity.values())
    shares = {n: 100 * c / total for n, c in capacity.items()}
    weights = {n: int(s) for n, s in shares.items()}
    leftover = 100 - sum(weights.values())
    for n in sorted(shares, key=lambda n: (weights[n] - shares[n], n))[:leftover]:
        weights[n] += 1
    return {**base, **weights}


def _ready_when_problems(loc: Loc, warm: Warmup):
    ready = warm.ready_when
    assert ready is not None
    limit = ready.p95_time_to_first_byte
    if limit.total_seconds() <= 0:
        yield (*loc, "p95_time_to_first_byte"), "expected a duration greater than 0"
    elif limit >= warm.timeout:
        yield (*loc, "p95_time_to_first_byte"), (
            f"{format_duration(limit)} is not below the per-request timeout ({format_duration(warm.timeout)}): "
            "every answered request would count as fast; lower it or raise warmup timeout"
        )
    if ready.timeout <= warm.timeout:
        yield (*loc, "timeout"), (
            f"{format_duration(ready.timeout)} leaves no time to judge: make it longer than the per-request "
            f"timeout ({format_duration(warm.timeout)}), e.g. 10m"
        )


def _switch_problems(dns: Dns, per_region):
    if dns.switch is DnsSwitch.weights:
        if dns.routing_controls is not None:
            yield ("spec", "dns", "routing_controls"), "routing controls are used only with switch: routing_controls"
        return
    if dns.provider is not DnsProvider.route53:
        yield ("spec", "dns", "switch"), "routing_controls are Route 53 ARC's: they need provider route53"
    if dns.routing_controls is None:
        yield ("spec", "dns", "routing_controls"), (
            "switch: routing_controls needs routing_controls (cluster_endpoints and a control per region)"
        )
        return
    yield from per_region(("spec", "dns", "routing_controls", "controls"), dns.routing_controls.controls, "routing control")


def _cross_field_problems(rb: Runbook):
    spec = rb.spec
    regions = set(spec.regions)
    primaries = [n for n, r in spec.regions.items() if r.role is Role.primary]
    if len(primaries) != 1:
        found = ", ".join(primaries) or "none"
        yield ("spec", "regions"), f"expected exactly one region with role primary, found {found}"
    contexts: dict[str, str] = {}
    for name, region in spec.regions.items():
        if region.kube.context in contexts:
            yield ("spec", "regions", name, "kube", "context"), (
                f"context {region.kube.context!r} is already used by region {contexts[region.kube.context]!r}"
            )
        contexts.setdefault(region.kube.context, name)

    def per_region(loc: Loc, mapping: dict[str, Any], what: str, require_all: bool = True):
        for key in mapping:
            if key not in regions:
                yield (*loc, key), f"unknown region {key!r}; regions are {', '.join(sorted(regions))}"
        if require_all:
            for missing in sorted(regions - set(mapping)):
                yield loc, f"no {what} for region {missing!r}; every region needs one to fail over to it"

    for i, notifier in enumerate(spec.notifications):
        if notifier.kind == "pagerduty":
            if notifier.routing_key_env is None:
                yield ("spec", "notifications", i), "pagerduty needs routing_key_env: the variable holding the integration key"
            if notifier.url is not None and notifier.url_env is not None:
                yield ("spec", "notifications", i), "give at most one of url and url_env"
        elif (notifier.url is None) == (notifier.url_env is None):
            yield ("spec", "notifications", i), "give exactly one of url and url_env"
        elif notifier.routing_key_env is not None:
            yield ("spec", "notifications", i, "routing_key_env"), "routing_key_env is for kind pagerduty"
    dns = spec.dns
    if dns.provider is DnsProvider.clouddns and not dns.project:
        yield ("spec", "dns", "project"), "the clouddns provider needs the Google Cloud project"
    if dns.provider is DnsProvider.route53 and (dns.project or dns.managed_zone):
        yield ("spec", "dns"), "project / managed_zone are for clouddns; route53 uses zone (and zone_id)"
    yield from _switch_problems(dns, per_region)
    for i, record in enumerate(dns.records):
        loc: Loc = ("spec", "dns", "records", i)
        if not (record.name == dns.zone or record.name.endswith("." + dns.zone)):
            yield (*loc, "name"), f"record {record.name!r} is not inside zone {dns.zone!r}"
        yield from per_region((*loc, "targets"), record.targets, "target")
        yield from per_region((*loc, "set_identifiers"), record.set_identifiers, "", require_all=False)
    for i, workload in enumerate(spec.workloads):
        loc = ("spec", "workloads", i)
        if workload.replicas.standby > workload.replicas.active:
            yield (*loc, "replicas", "standby"), (
                f"standby replicas ({workload.replicas.standby}) exceed active ({workload.replicas.active})"
            )
        for j, region in enumerate(workload.regions or []):
            if region not in regions:
                yield (*loc, "regions", j), f"unknown region {region!r}; regions are {', '.join(sorted(regions))}"
    model_names = set()
    for i, model in enumerate(spec.models):
        loc = ("spec", "models", i)
        if (model.name, model.version) in model_names:
            yield (*loc, "name"), f"model {model.name} {model.version} is listed twice"
        model_names.add((model.name, model.version))
        yield from per_region((*loc, "artifacts"), model.artifacts, "artifact location")
    for i, warm in enumerate(spec.warmup):
        if warm.model is not None and warm.model not in {m.name for m in spec.models}:
            yield ("spec", "warmup", i, "model"), f"unknown model {warm.model!r}; models are {', '.join(sorted({m.name for m in spec.models})) or 'none'}"
        if warm.ready_when is not None:
            yield from _ready_when_problems(("spec", "warmup", i, "ready_when"), warm)
    steps = spec.traffic_shift.steps
    for i in range(1, len(steps)):
        if steps[i] <= steps[i - 1]:
            yield ("spec", "traffic_shift", "steps", i), (
                f"expected steps to increase strictly, got {steps[i]} after {steps[i - 1]}"
            )
    if steps and steps[-1] != 100:
        yield ("spec", "traffic_shift", "steps"), f"expected the last step to be 100, got {steps[-1]}"
    if any(s > 100 for s in steps):
        yield ("spec", "traffic_shift", "steps"), "steps are percentages: each must be at most 100"
    max_ttl = max(r.ttl for r in dns.records)
    if spec.traffic_shift.bake.total_seconds() < max_ttl:
        yield ("spec", "traffic_shift", "bake"), (
            f"bake ({format_duration(spec.traffic_shift.bake)}) is shorter than the DNS TTL ({max_ttl}s): "
            "a step would be judged before resolvers saw it"
        )
    health = spec.health
    for i, check in enumerate([*health.prometheus, *spec.traffic_shift.analysis]):
        if check.max is None and check.min is None:
            section = "health" if i < len(health.prometheus) else "traffic_shift"
            index = i if section == "health" else i - len(health.prometheus)
            field = "prometheus" if section == "health" else "analysis"
            yield ("spec", section, field, index), "a Prometheus check needs max, min or both"
    if (health.prometheus or spec.traffic_shift.analysis) and any(
        r.prometheus is None for r in spec.regions.values()
    ):
        yield ("spec", "regions"), "Prometheus checks are configured: every region needs its prometheus URL"
    if spec.objectives.rto.total_seconds() <= 0:
        yield ("spec", "objectives", "rto"), "expected a duration greater than 0"
    if spec.drills is not None and spec.guardrails.blocking_alerts and spec.drills.alertmanager is None:
        yield ("spec", "drills"), (
            "guardrails.blocking_alerts are declared: add alertmanager (its URL) so a drill can check them before it starts"
        )
    if spec.drills is not None and spec.guardrails.blocking_queries and spec.drills.prometheus is None:
        yield ("spec", "drills"), (
            "guardrails.blocking_queries are declared: add prometheus (its URL) so a drill can evaluate them before it starts"
        )
    yield from block_problems(spec.blocks, regions)
    serving = [n for n, r in spec.regions.items() if r.role is not Role.standby]
    if len(serving) < spec.guardrails.min_healthy_targets:
        yield ("spec", "guardrails", "min_healthy_targets"), (
            f"{spec.guardrails.min_healthy_targets} healthy targets required but only {len(serving)} "
            f"region(s) serve normally ({', '.join(serving)}); lower it or give more regions role active"
        )

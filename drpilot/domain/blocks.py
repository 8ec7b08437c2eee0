"""Blocks: what a runbook adds to the procedures beyond the serving tier (spec.blocks).

A block is one durable step of a kind (a database switchover, an HTTP call, a Kubernetes
Job, extra workloads scaled, a person's approval) at a named stage of a failover or a
failback. The model is flat (every kind's fields on one `Block`) so a typo is an "unknown
field" with a hint; which fields a kind uses is checked with the rest of the runbook's
cross-field rules (`block_problems`), each problem at its own place in the file.

`{source}` and `{target}` in a block stand for the run's regions: in a failover the region
left and the first target; in a failback the DR region traffic comes back from and the
original region. A block therefore means the same thing in both directions.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError

from drpilot.domain.durations import Duration, format_duration
from drpilot.domain.fields import EnvName, Frozen, HttpUrl, KubeName, PositiveInt, Text

Kind = Literal["aurora_global", "http", "kubernetes_job", "scale", "approval"]
Stage = Literal["prepare", "before_switch", "after_switch", "before_shift", "after_shift", "deactivate"]

# The stages of each procedure, in the order they run. A block written for one procedure's
# stage runs at the matching stage of the other (before_switch <-> before_shift, after_switch
# <-> after_shift): the same moment relative to the traffic moving.
FAILOVER_STAGES: tuple[str, ...] = ("prepare", "before_switch", "after_switch", "deactivate")
FAILBACK_STAGES: tuple[str, ...] = ("prepare", "before_shift", "after_shift", "deactivate")
_MATCHING = {"before_switch": "before_shift", "after_switch": "after_shift"}
_MATCHING.update({v: k for k, v in list(_MATCHING.items())})

# Stages before traffic moves: a block failing there stops the run before DNS changes.
BEFORE_TRAFFIC = frozenset({"prepare", "before_switch", "before_shift"})

# What each kind may not do where: the writer of the data tier must move before the traffic
# does (a failback makes home the writer before the shift starts), never after.
_KIND_STAGES: dict[str, frozenset[str]] = {"aurora_global": BEFORE_TRAFFIC}

# Fields each kind uses, besides name, kind, at, on and on_failure.
_KIND_FIELDS: dict[str, tuple[str, ...]] = {
    "aurora_global": ("global_cluster", "members", "max_lag"),
    "http": ("request", "expect", "undo", "timeout"),
    "kubernetes_job": ("region", "namespace", "template", "job", "timeout"),
    "scale": ("region", "workloads", "timeout"),
    "approval": ("message",),
}
_REQUIRED: dict[str, tuple[str, ...]] = {
    "aurora_global": ("global_cluster", "members"),
    "http": ("request",),
    "kubernetes_job": ("namespace",),
    "scale": ("workloads",),
    "approval": (),
}
PLACEHOLDERS = ("{source}", "{target}")


def stage_in(at: str, action: str) -> str:
    """The stage a block written `at` runs at in procedure `action`."""
    stages = FAILOVER_STAGES if action == "failover" else FAILBACK_STAGES
    return at if at in stages else _MATCHING[at]


def substitute(value: Any, source: str, target: str) -> Any:
    """`value` with {source} / {target} replaced in every string (keys too). Plain replacement,
    not str.format: a JSON body's own braces stay as written."""
    if isinstance(value, str):
        return value.replace("{source}", source).replace("{target}", target)
    if isinstance(value, dict):
        return {substitute(k, source, target): substitute(v, source, target) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute(v, source, target) for v in value]
    return value


class Request(Frozen):
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = Field("POST", description="HTTP method.")
    url: HttpUrl = Field(description="http:// or https:// URL; {source} / {target} are replaced by the run's regions.")
    body: Any = Field(None, description="JSON body; {source} / {target} in its strings are replaced.")
    headers_from_env: dict[Text, EnvName] = Field(
        default_factory=dict,
        description="Header -> the worker's environment variable holding its value (a token): read by the worker only, "
        "never written to a run's history or logs.",
    )


class ScaledWorkload(Frozen):
    namespace: KubeName
    deployment: KubeName = Field(description="apps/v1 Deployment; not one of spec.workloads (never counted as serving capacity).")
    replicas: Annotated[int, Field(ge=0)] = Field(description="Replicas it is scaled to.")


def _read_template(path: Path) -> dict[str, Any]:
    import yaml  # only when a runbook is loaded from its file: workflows import this module without YAML

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise PydanticCustomError("template", "cannot read template {path}: {reason}", {"path": str(path), "reason": reason}) from None
    except yaml.YAMLError as exc:
        reason = str(exc).splitlines()[0]
        raise PydanticCustomError("template", "template {path} is not valid YAML: {reason}", {"path": str(path), "reason": reason}) from None
    if not isinstance(data, dict) or data.get("kind") != "Job":
        raise PydanticCustomError("template", "template {path} is not a Kubernetes Job manifest (kind: Job)", {"path": str(path)})
    return data


def _base(info: ValidationInfo) -> Path | None:
    context = info.context if isinstance(info.context, dict) else None
    base = context.get("base") if context else None
    return Path(base) if base is not None else None


class Block(Frozen):
    name: KubeName = Field(description="Unique among the runbook's blocks; the step's name in the timeline and the Job's.")
    kind: Kind = Field(description="aurora_global, http, kubernetes_job, scale or approval.")
    at: Stage = Field(
        description="The stage it runs at. Failover: prepare (beside the serving tier's), before_switch, after_switch, "
        "deactivate (the region left, when reachable). Failback: prepare, before_shift, after_shift (after 100 %), "
        "deactivate (the DR side). before_switch / before_shift and after_switch / after_shift are the same moment "
        "in the other direction."
    )
    on: list[Literal["failover", "failback"]] = Field(
        default_factory=lambda: ["failover", "failback"], description="The procedures it runs in; both when omitted."
    )
    on_failure: Literal["fail", "rollback"] = Field(
        "fail",
        description="After the traffic moved, a failed block fails the run and leaves traffic where it is (fail), or "
        "returns it to the last good weights (rollback). Before, a failed block always stops the run before DNS moves.",
    )
    region: Text | None = Field(None, description="kubernetes_job, scale: a runbook region, {source} or {target} (default {target}).")
    # aurora_global
    global_cluster: Text | None = Field(None, description="aurora_global: the Aurora global database identifier.")
    members: dict[Text, Text] | None = Field(None, description="aurora_global: per runbook region, the member DB cluster's ARN there.")
    max_lag: Duration | None = Field(
        None, description="aurora_global: a graceful switchover only under this replication lag (default 30s)."
    )
    # http
    request: Request | None = Field(None, description="http: the request (sent once, with an Idempotency-Key from the run and block).")
    expect: PositiveInt | None = Field(None, description="http: the status that counts as done (default: any 2xx).")
    undo: Request | None = Field(
        None,
        description="http: the request compensation sends when the run ends with the traffic back where it started "
        "(failed before the switch, aborted, rolled back); {source} / {target} as in request.",
    )
    # kubernetes_job
    namespace: KubeName | None = Field(None, description="kubernetes_job: the Job's namespace.")
    template: Text | None = Field(None, description="kubernetes_job: a Job manifest file, relative to the runbook file.")
    job: dict[str, Any] | None = Field(None, description="kubernetes_job: the Job manifest inline (instead of template).")
    timeout: Duration | None = Field(
        None, description="kubernetes_job: how long the Job may run (default 10m); http: per request (default 30s); "
        "scale: how long pods may take to be ready (default 10m)."
    )
    # scale
    workloads: list[ScaledWorkload] | None = Field(None, min_length=1, description="scale: Deployments and the replicas they are scaled to.")
    # approval
    message: Text | None = Field(None, description="approval: what the approver is asked to confirm.")

    @field_validator("template")
    @classmethod
    def _template_exists(cls, value: str | None, info: ValidationInfo) -> str | None:
        base = _base(info)
        if value is not None and base is not None:
            path = base / value
            if not path.is_file():
                raise PydanticCustomError(
                    "template", "template file {path} not found (a path relative to the runbook file)", {"path": str(path)}
                )
            _read_template(path)
        return value

    @model_validator(mode="before")
    @classmethod
    def _fill_job(cls, data: Any, info: ValidationInfo) -> Any:
        """Loaded from a file: the template's manifest goes into `job`, so the runbook that
        travels into the run carries it (the worker never reads the runbook's directory)."""
        base = _base(info)
        if base is None or not isinstance(data, dict) or not isinstance(data.get("template"), str):
            return data
        if data.get("job") is not None:
            raise PydanticCustomError("block", "give template (a file) or job (inline), not both")
        try:
            return {**data, "job": _read_template(base / data["template"])}
        except PydanticCustomError:
            return data  # the template field's own validator says why

    # ------------------------------------------------------------------ views
    def stage(self, action: str) -> str | None:
        """The stage it runs at in `action`, or None when it does not run there."""
        return stage_in(self.at, action) if action in self.on else None

    def describe(self, source: str, target: str) -> str:
        """What it would do in a run from `source` to `target`, in one line (`runbook plan`)."""
        region = substitute(self.region_or_target, source, target)
        if self.kind == "aurora_global":
            return (
                f"make {target}'s member of Aurora global database {self.global_cluster} the writer: a switchover "
                f"under {format_duration(self.lag_limit)} of lag (graceful), a failover allowing data loss (ungraceful or {source} dark)"
            )
        if self.kind == "http":
            assert self.request is not None
            line = f"{self.request.method} {substitute(self.request.url, source, target)} (expects {self.expect or '2xx'})"
            if self.undo is not None:
                line += f"; undo {self.undo.method} {substitute(self.undo.url, source, target)}"
            return line
        if self.kind == "kubernetes_job":
            return (
                f"run a Job in {region} ({self.namespace}, from {self.template or 'the inline job'}), "
                f"up to {format_duration(self.run_timeout)}"
            )
        if self.kind == "scale":
            shown = ", ".join(f"{w.namespace}/{w.deployment} -> {w.replicas}" for w in self.workloads or [])
            return f"scale in {region}: {shown} (not serving capacity)"
        return f"wait for `drpilot approve`: {self.message or self.name}"

    @property
    def lag_limit(self) -> timedelta:
        return self.max_lag if self.max_lag is not None else timedelta(seconds=30)

    @property
    def request_timeout(self) -> timedelta:
        return self.timeout if self.timeout is not None else timedelta(seconds=30)

    @property
    def run_timeout(self) -> timedelta:
        return self.timeout if self.timeout is not None else timedelta(minutes=10)

    @property
    def region_or_target(self) -> str:
        return self.region if self.region is not None else "{target}"


def block_problems(blocks: list[Block], regions: set[str]) -> Iterator[tuple[tuple[str | int, ...], str]]:
    """Cross-field rules of spec.blocks: (location, message) as the runbook's own rules give them."""
    seen: dict[str, int] = {}
    for i, block in enumerate(blocks):
        loc: tuple[str | int, ...] = ("spec", "blocks", i)
        if block.name in seen:
            yield (*loc, "name"), f"block {block.name!r} is already the name of spec.blocks[{seen[block.name]}]"
        seen.setdefault(block.name, i)
        allowed = _KIND_STAGES.get(block.kind)
        if allowed is not None and block.at not in allowed:
            yield (*loc, "at"), (
                f"kind {block.kind} cannot run at {block.at}: the writer moves before the traffic does "
                f"(use {', '.join(sorted(allowed))})"
            )
        used = set(_KIND_FIELDS[block.kind])
        for field in ("region", "global_cluster", "members", "max_lag", "request", "expect", "undo", "namespace",
                      "template", "job", "timeout", "workloads", "message"):
            if getattr(block, field) is not None and field not in used:
                yield (*loc, field), f"{field} is not used by kind {block.kind} (it uses {', '.join(_KIND_FIELDS[block.kind])})"
        for field in _REQUIRED[block.kind]:
            if getattr(block, field) is None:
                yield (*loc, field), f"kind {block.kind} needs {field}"
        if block.region is not None and block.region not in regions and block.region not in PLACEHOLDERS:
            yield (*loc, "region"), (
                f"expected a runbook region ({', '.join(sorted(regions))}), {{source}} or {{target}}, got {block.region!r}"
            )
        if block.kind == "kubernetes_job" and block.template is None and block.job is None:
            yield loc, "kind kubernetes_job needs template (a Job manifest file) or job (inline)"
        if block.kind == "aurora_global" and block.members is not None:
            for key in block.members:
                if key not in regions:
                    yield (*loc, "members", key), f"unknown region {key!r}; regions are {', '.join(sorted(regions))}"
            for missing in sorted(regions - set(block.members)):
                yield (*loc, "members"), (
                    f"no member cluster for region {missing!r}: the runbook fails over (or back) to it, "
                    "and the writer follows the traffic"
                )

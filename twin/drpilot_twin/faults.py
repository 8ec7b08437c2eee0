"""The faults a sandbox twin can be told to show, in one thread-safe place every part reads.

The control API and `drpilot sandbox fault ...` write here; the Kubernetes emulator, the
Route53 front, the S3 / Glacier seeding, the Cloud DNS emulator and the model servers read
it on every request, so a fault takes effect at once and clearing it restores normal
behaviour. Durations of waits are in simulated seconds: parts divide them by the twin's
speed. Extra request latency is not a wait but what a request takes: never divided.
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

# The account's vCPU quota for GPU instances in a region when `quota` says nothing (a raised
# quota; AWS's default for new accounts is far lower): Karpenter and Service Quotas read it.
DEFAULT_GPU_VCPU_QUOTA = 1536


@dataclass(frozen=True)
class ErrorRamp:
    """Region `region` starts failing `error_rate` of requests once its DNS weight >= `at_weight`."""

    at_weight: int
    error_rate: float


@dataclass(frozen=True)
class ColdModel:
    """Region's model is cold: its first inference request takes `seconds` more, the extra
    falling linearly to none by request `requests` (counted from when the fault was set or
    changed). A freshly loaded LLM server is slow on its first requests while it compiles
    kernels, captures CUDA graphs and fills its caches (vLLM / TensorRT-LLM warm-up); the
    runbook's warmup[].ready_when is what waits that out."""

    seconds: float
    requests: int

    def extra(self, served: int) -> float:
        """Extra seconds of the request after `served` ones."""
        return self.seconds * max(0.0, 1.0 - served / self.requests) if self.requests > 0 else 0.0


@dataclass(frozen=True)
class Faults:
    # Regions that are dark: their model server fails every request (503 / connection
    # refused) and their Kubernetes API emulator refuses connections (503).
    region_down: frozenset[str] = frozenset()
    # Per region: seconds a pod takes to become ready (overrides the twin's default).
    pod_start_seconds: dict[str, float] = field(default_factory=dict)
    # Regions whose nodes have no free GPU now (as gpu_free.REGION=0): pods asking for one
    # stay Pending / Unschedulable, a consequence of capacity like any other.
    pods_stalled: frozenset[str] = frozenset()
    # Per region: GPUs free on its nodes now (the rest taken by another team's pods, spread
    # one free GPU per node in turn); set once when the value changes.
    gpu_free: dict[str, int] = field(default_factory=dict)
    # Per region: seconds Karpenter takes to bring up a node (default 120).
    node_provision_seconds: dict[str, float] = field(default_factory=dict)
    # Per region: an image its registry does not hold (pulls fail with ErrImagePull, and
    # ECR DescribeImages answers ImageNotFoundException for it).
    image_missing: dict[str, str] = field(default_factory=dict)
    # Per region: the account's vCPU quota for GPU instances (Service Quotas); Karpenter
    # cannot launch nodes beyond it.
    quota: dict[str, int] = field(default_factory=dict)
    # Per region: the size in bytes of the images its pods pull (default 10 GB, the size
    # pod_start_seconds is for); a pull takes its share of the start in proportion.
    image_bytes: dict[str, int] = field(default_factory=dict)
    # Seconds a Glacier restore_object takes before the object is readable.
    glacier_delay_seconds: float = 0.0
    # Route53: seconds a change stays PENDING before INSYNC.
    route53_pending_seconds: float = 0.0
    # Route53: the next N API calls answer 400 Throttling ("Rate exceeded").
    route53_throttle_count: int = 0
    # Route53's control plane (ChangeResourceRecordSets, GetChange; served from us-east-1)
    # does not answer: those calls get 503. Record reads and ARC's data plane keep working.
    route53_control_plane_down: bool = False
    # Route 53 ARC: the first N of the cluster's five endpoints answer 503
    # EndpointTemporarilyUnavailableException.
    arc_endpoints_down: int = 0
    # Cloud DNS: seconds a change stays "pending" before "done".
    clouddns_pending_seconds: float = 0.0
    # Regions whose Velero restores end PartiallyFailed (with errors and warnings).
    velero_partially_failed: frozenset[str] = frozenset()
    # Regions whose Velero restores end Failed.
    velero_failed: frozenset[str] = frozenset()
    # Per region: an error rate that starts when its DNS weight reaches a threshold.
    error_ramp: dict[str, ErrorRamp] = field(default_factory=dict)
    # Per region: extra latency (seconds) added to every inference request, at any speed.
    extra_latency_seconds: dict[str, float] = field(default_factory=dict)
    # Per region: a cold model, slow on its first requests (ColdModel), at any speed.
    cold_model: dict[str, ColdModel] = field(default_factory=dict)
    # "REGION:MODEL": the model's weights file in the region's gs:// copy is deleted /
    # overwritten with other bytes of the same size (once each time the fault is set).
    gcs_object_missing: frozenset[str] = frozenset()
    gcs_corrupt: frozenset[str] = frozenset()
    # Blocks (spec.blocks) of kind http whose requests the sandbox's HTTP receiver answers
    # 503 with no effect (drpilot_twin/receiver.py).
    http_fails: frozenset[str] = frozenset()
    # Aurora Global Database: the replication lag (seconds) CloudWatch's
    # AuroraGlobalDBReplicationLag shows for every secondary (0: a typical sub-second lag).
    aurora_lag_seconds: float = 0.0
    # Aurora cancels every SwitchoverGlobalCluster it accepts: FailoverState `cancelling`,
    # then the writer it had.
    aurora_switchover_fails: bool = False
    # Blocks (spec.blocks[].name) whose Kubernetes Jobs fail: the Job controller finds the
    # block in the Job's label drpilot.io/block; each pod exits 1 with an error in its log.
    job_fails: frozenset[str] = frozenset()

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        for f in fields(self):
            if isinstance(data[f.name], frozenset):
                data[f.name] = sorted(data[f.name])
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Faults:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown fault(s): {', '.join(sorted(unknown))}; known: {', '.join(sorted(known))}")
        values: dict[str, Any] = {}
        for f in fields(cls):
            if f.name not in data:
                continue
            value = data[f.name]
            if f.name == "error_ramp":
                value = {r: v if isinstance(v, ErrorRamp) else ErrorRamp(**v) for r, v in value.items()}
            elif f.name == "cold_model":
                value = {r: v if isinstance(v, ColdModel) else ColdModel(**v) for r, v in value.items()}
            elif isinstance(getattr(cls(), f.name), frozenset):
                value = frozenset(value)
            values[f.name] = value
        return cls(**values)


class FaultBoard:
    """Current faults, swapped atomically; parts call `.now` on every request."""

    def __init__(self, initial: Faults | None = None):
        self._lock = threading.Lock()
        self._faults = initial or Faults()

    @property
    def now(self) -> Faults:
        return self._faults

    def set(self, faults: Faults) -> None:
        with self._lock:
            self._faults = faults

    def update(self, **changes: Any) -> Faults:
        with self._lock:
            merged = Faults.from_json({**self._faults.to_json(), **{k: v for k, v in changes.items()}})
            self._faults = merged
            return merged

    def clear(self) -> None:
        self.set(Faults())

    def take_route53_throttle(self) -> bool:
        """True (and one fewer left) when this Route53 call should be throttled."""
        with self._lock:
            if self._faults.route53_throttle_count <= 0:
                return False
            self._faults = replace(self._faults, route53_throttle_count=self._faults.route53_throttle_count - 1)
            return True

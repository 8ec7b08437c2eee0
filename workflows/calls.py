"""Every activity a run calls, with its timeouts and retry policy in one place.

Activities are called by name (activities/contracts.py), so tests replace them by
registering other functions under the same names. Each call sets start_to_close; the
long ones (waits for pods, DNS propagation, Glacier, Velero, health gates) heartbeat and
set heartbeat_timeout so a lost worker is noticed in seconds, not at the end of the wait.
The waits a rehearsal scaled, as they report them, go to the run's RTO projection.
Timeouts that bound a simulated wait are divided by the rehearsal speed, with a floor so
a fast rehearsal still leaves real HTTP calls room.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities import contracts as c
    from drpilot.domain.measurement import analysis_needs, health_needs, rehearsed_length
    from drpilot.domain.runbook import Runbook
    from workflows import projection, versions

R = TypeVar("R")

# Errors no retry can fix: a bug or a runbook the provider rejects. Activities mark their
# own permanent failures ApplicationError(non_retryable=True); these are the rest.
PERMANENT = ["PlanError", "ValidationError", "ValueError", "TypeError", "KeyError", "AttributeError"]
# A lost worker's activity is retried once its heartbeat timeout passes. Since 0.4.0 every
# provider call is bounded and the worker heartbeats every running activity (drpilot/frontdoor/
# keepalive.py), so every activity has 10 s; runs replaying without the patch keep what they had
# (`before`: 60 s for the long waits, 120 s for the archive restore and the sync, none for the rest).
HEARTBEAT = timedelta(seconds=10)


def _heartbeat(before: float | None) -> timedelta | None:
    short = workflow.patched(versions.SHORT_HEARTBEAT)
    return HEARTBEAT if short else None if before is None else timedelta(seconds=before)


def _retry(attempts: int, max_interval: float = 30.0) -> RetryPolicy:
    return RetryPolicy(
        initial_interval=timedelta(seconds=1), backoff_coefficient=2.0, maximum_interval=timedelta(seconds=max_interval),
        maximum_attempts=attempts, non_retryable_error_types=PERMANENT,
    )


# A rehearsal wait shorter than this is slept by a local activity, not a server timer, which
# fires about a second late whatever its length (activities/rehearsal.py).
SHORT_WAIT_SECONDS = 2.0


async def rehearsal_wait(seconds: float, summary: str) -> None:
    await workflow.execute_local_activity(
        c.REHEARSAL_WAIT,
        seconds,
        start_to_close_timeout=timedelta(seconds=SHORT_WAIT_SECONDS + 10),
        retry_policy=_retry(3),
        summary=summary,
    )


def _scaled(seconds: float, speed: float, floor: float = 30.0) -> float:
    return max(seconds / speed, floor)


async def _execute(
    activity: str,
    arg: Any,
    result_type: type[R],
    *,
    seconds: float,
    retry: RetryPolicy,
    summary: str,
    heartbeat: float | None = None,
    projected: bool = False,
) -> R:
    """One activity with its start_to_close of `seconds`; `heartbeat`: its timeout before 0.4.0;
    `projected`: the waits it reports go to the RTO projection."""
    result = await workflow.execute_activity(
        activity,
        arg,
        result_type=result_type,
        start_to_close_timeout=timedelta(seconds=seconds),
        heartbeat_timeout=_heartbeat(heartbeat),
        retry_policy=retry,
        summary=summary,
    )
    if projected:
        projection.record(result.waits)  # type: ignore[attr-defined]
    return result


async def dns_read(runbook: Runbook, *, control_plane: bool = False) -> c.DnsState:
    """What DNS answers; `control_plane`: also whether Route53's control plane answers
    (DnsState.control_plane_down)."""
    return await _execute(
        c.DNS_READ, c.DnsReadInput(runbook=runbook, control_plane=control_plane), c.DnsState, seconds=60,
        retry=_retry(5), summary="read DNS weights",
    )


async def routing_controls_ready(runbook: Runbook) -> c.RoutingControlsReadiness:
    # Each endpoint is asked on its own (a dark one costs its connect timeout): no retries of
    # the whole, one bad endpoint is the answer.
    return await _execute(
        c.DNS_CONTROLS_READY, c.DnsReadInput(runbook=runbook), c.RoutingControlsReadiness, seconds=120,
        retry=_retry(2), summary="read the routing controls' readiness",
    )


def start_dns_apply(
    runbook: Runbook,
    weights: dict[str, int],
    speed: float,
    *,
    known_good: bool = False,
    overrides: tuple[str, ...] = (),
    hold_on_control_plane: bool = False,
):
    """Started, not awaited: the caller shields it so an abort never cancels a change batch
    half-way (compensation waits for it, then applies the last good weights).
    `hold_on_control_plane`: Route53's control plane not answering comes back at once (the
    caller holds and polls it) instead of after every retry."""
    retry = _retry(8)
    if hold_on_control_plane:
        retry.non_retryable_error_types = [*PERMANENT, c.ErrorType.DNS_CONTROL_PLANE_DOWN]
    return workflow.start_activity(
        c.DNS_APPLY,
        c.DnsApplyInput(
            runbook=runbook, weights=weights, speed=speed, known_good=known_good,
            override_safety_rules=list(overrides),
        ),
        result_type=c.DnsApplyResult,
        # Route53 INSYNC normally takes under a minute; Cloud DNS seconds.
        start_to_close_timeout=timedelta(seconds=_scaled(600, speed, 60)),
        heartbeat_timeout=_heartbeat(60),
        retry_policy=retry,
        summary=f"set DNS weights {weights}",
    )


async def kube_read(runbook: Runbook, region: str, *, attempts: int = 3) -> c.ReplicaState:
    return await _execute(
        c.KUBE_READ, c.KubeReadInput(runbook=runbook, region=region), c.ReplicaState,
        seconds=30, retry=_retry(attempts, 5), summary=f"read replicas in {region}",
    )


async def kube_capacity(runbook: Runbook, region: str, *, attempts: int = 3) -> c.CapacityResult:
    return await _execute(
        c.KUBE_CAPACITY, c.CapacityInput(runbook=runbook, region=region), c.CapacityResult,
        seconds=60, retry=_retry(attempts, 5), summary=f"read capacity in {region}",
    )


async def images_check(runbook: Runbook, region: str) -> c.ImagesResult:
    return await _execute(
        c.IMAGES_CHECK, c.ImagesInput(runbook=runbook, region=region), c.ImagesResult,
        seconds=60, retry=_retry(2, 5), summary=f"check images in {region}",
    )


async def quota_check(runbook: Runbook, region: str, capacity: c.CapacityResult) -> c.QuotaResult:
    return await _execute(
        c.QUOTA_CHECK, c.QuotaInput(runbook=runbook, region=region, capacity=capacity), c.QuotaResult,
        seconds=60, retry=_retry(2, 5), summary=f"check GPU quota in {region}",
    )


async def kube_scale(
    runbook: Runbook,
    region: str,
    to: str,
    speed: float,
    *,
    wait_ready: bool = True,
    wait_seconds: float = 600.0,
) -> c.ScaleResult:
    timeout = _scaled(wait_seconds, speed)
    return await _execute(
        c.KUBE_SCALE,
        c.ScaleInput(
            runbook=runbook, region=region, to=to, wait_ready=wait_ready, timeout_seconds=timeout, speed=speed
        ),
        c.ScaleResult,
        seconds=timeout + 60, heartbeat=60, retry=_retry(5), summary=f"scale {region} to {to}", projected=True,
    )


# Bytes per second an artifacts activity is sure to manage reading a body (deep verify) or
# having S3 copy one (UploadPartCopy runs server-side): conservative, so a timeout that
# follows from a model's size is never the reason a large model fails.
TRANSFER_BYTES_PER_SECOND = 50 * 1024**2


def _transfer_seconds(nbytes: int | None, unknown: float) -> float:
    """Seconds for moving `nbytes` (from a previous activity's result), or `unknown` when the
    caller has no size yet. Heartbeats (per file, chunk and part) catch a lost worker."""
    return unknown if nbytes is None else 600 + nbytes / TRANSFER_BYTES_PER_SECOND


def _verify_mode(runbook: Runbook, model: str, version: str) -> str:
    return next((m.verify for m in runbook.spec.models if m.name == model and m.version == version), "fast")


async def artifacts_verify(
    runbook: Runbook, region: str, model: str, version: str, nbytes: int | None = None, *, attempts: int = 5
) -> c.VerifyResult:
    # fast reads only S3's metadata (and the odd body S3 has no checksum for); deep hashes
    # every body, which for a model of unknown size may take hours.
    deep = _verify_mode(runbook, model, version) == "deep"
    timeout = _transfer_seconds(nbytes if deep else None, 6 * 3600 if deep else 1800)
    return await _execute(
        c.ARTIFACTS_VERIFY, c.ArtifactInput(runbook=runbook, region=region, model=model, version=version),
        c.VerifyResult, seconds=timeout, heartbeat=60, retry=_retry(attempts),
        summary=f"verify {model} {version} in {region}",
    )


async def artifacts_restore(
    runbook: Runbook,
    region: str,
    model: str,
    version: str,
    budget_seconds: float,
    speed: float,
    nbytes: int | None = None,
) -> c.RestoreResult:
    # A Standard-tier Glacier retrieval takes hours (Bulk up to 12); heartbeats carry per-file
    # progress so a retry after a lost worker resumes instead of restoring again.
    glacier = _scaled(12 * 3600, speed, 120)
    return await _execute(
        c.ARTIFACTS_RESTORE,
        c.RestoreInput(
            runbook=runbook, region=region, model=model, version=version,
            budget_seconds=budget_seconds, speed=speed,
        ),
        c.RestoreResult,
        seconds=glacier + _transfer_seconds(nbytes, 3600), heartbeat=120, retry=_retry(10, 60),
        summary=f"restore {model} {version} into {region} from the archive", projected=True,
    )


async def artifacts_sync(
    runbook: Runbook, model: str, version: str, source: str, target: str, nbytes: int | None = None
) -> c.SyncResult:
    return await _execute(
        c.ARTIFACTS_SYNC,
        c.SyncInput(runbook=runbook, model=model, version=version, source_region=source, target_region=target),
        c.SyncResult, seconds=_transfer_seconds(nbytes, 6 * 3600), heartbeat=120,
        retry=_retry(10, 60), summary=f"sync {model} {version} {source} -> {target}",
    )


async def velero_restore(runbook: Runbook, region: str, name: str, speed: float) -> c.VeleroRestoreResult:
    timeout = _scaled(1800, speed, 60)
    return await _execute(
        c.VELERO_RESTORE,
        c.VeleroRestoreInput(runbook=runbook, region=region, restore_name=name, timeout_seconds=timeout, speed=speed),
        c.VeleroRestoreResult, seconds=timeout + 120, heartbeat=60, retry=_retry(5),
        summary=f"velero restore {name} in {region}", projected=True,
    )


async def warmup(runbook: Runbook, region: str, speed: float) -> c.WarmupResult:
    # Entries judged by ready_when may send until their (rehearsal-scaled) timeouts.
    judged = sum(_scaled(w.ready_when.timeout.total_seconds(), speed) for w in runbook.spec.warmup if w.ready_when)
    return await _execute(
        c.PROBES_WARMUP, c.WarmupInput(runbook=runbook, region=region, speed=speed), c.WarmupResult,
        seconds=600 + judged, heartbeat=60, retry=_retry(3), summary=f"warm up {region}",
    )


async def health_gate(runbook: Runbook, region: str, speed: float, *, rounds: int | None = None) -> c.HealthResult:
    """The region's health gate; `rounds=1` is one short round (a check right before a DNS
    move, or of a rollback's destination) instead of the runbook's consecutive passes."""
    # A failing gate is a result (passed=False), not an error: only a probe that could not
    # run at all is retried, once.
    # The gate may hold, in real time, for its Prometheus checks' ranges (measurement.py).
    timeout = rehearsed_length(runbook.spec.health.timeout.total_seconds(), speed, health_needs(runbook.spec))
    return await _execute(
        c.PROBES_HEALTH, c.HealthInput(runbook=runbook, region=region, speed=speed, rounds=rounds), c.HealthResult,
        seconds=timeout + 60, heartbeat=60, retry=_retry(2), summary=f"health gate {region}", projected=True,
    )


async def analyse(runbook: Runbook, region: str, window_seconds: float, speed: float) -> c.AnalyseResult:
    # Judged against the runbook's limits as written, at any rehearsal speed: requests and
    # their latency are real-time even when the bake before them was compressed. The speed
    # tells it how long the bake stood for: Prometheus's ranges need that in real time.
    held = analysis_needs(runbook.spec)
    return await _execute(
        c.PROBES_ANALYSE, c.AnalyseInput(runbook=runbook, region=region, window_seconds=window_seconds, speed=speed),
        c.AnalyseResult, seconds=300 + held, heartbeat=60, retry=_retry(3), summary=f"analyse traffic in {region}",
    )


async def rollout_restart(runbook: Runbook, region: str, key: str, speed: float) -> c.RolloutRestartResult:
    """Pods that started before the region's artifacts were repaired serve what they loaded:
    replace them. `key` makes a retry (or a replay) one restart, not two."""
    timeout = _scaled(600, speed)
    return await _execute(
        c.KUBE_ROLLOUT_RESTART,
        c.RolloutRestartInput(runbook=runbook, region=region, restarted_at=key, timeout_seconds=timeout, speed=speed),
        c.RolloutRestartResult, seconds=timeout + 60, heartbeat=60, retry=_retry(5),
        summary=f"rollout restart in {region}", projected=True,
    )


async def velero_backup(runbook: Runbook, region: str) -> c.VeleroBackupInfo:
    """The Backup a Velero restore into `region` would use now, and when it completed (RPO)."""
    return await _execute(
        c.VELERO_BACKUP, c.VeleroBackupInput(runbook=runbook, region=region), c.VeleroBackupInfo,
        seconds=60, retry=_retry(5), summary=f"velero backup for {region}",
    )


async def last_drill(runbook: Runbook) -> c.LastDrill:
    """The runbook's newest completed drill, from its evidence packs (spec.drills.cadence)."""
    return await _execute(
        c.DRILL_LAST, c.LastDrillInput(runbook=runbook), c.LastDrill, seconds=60, retry=_retry(5), summary="last completed drill",
    )


def start_notify(notifier, event: c.RunEvent):
    """Started, not awaited on the procedure's path: a notification never holds a run up;
    the run collects the outcome before it ends and records one that was not delivered."""
    return workflow.start_activity(
        c.NOTIFY_SEND,
        c.NotifyInput(notifier=notifier, event=event),
        result_type=c.NotifyResult,
        start_to_close_timeout=timedelta(seconds=30),
        heartbeat_timeout=_heartbeat(None),
        retry_policy=_retry(3, 10),
        summary=f"notify {event.event}",
    )


async def firing_alerts(runbook: Runbook) -> c.FiringAlerts:
    """The runbook's blocking alerts firing now (a drill's preflight and soak); read-only."""
    return await _execute(
        c.DRILL_ALERTS, c.FiringAlertsInput(runbook=runbook), c.FiringAlerts,
        seconds=30, retry=_retry(3, 5), summary="read firing blocking alerts",
    )

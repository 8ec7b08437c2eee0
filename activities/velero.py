"""Velero activity: restore the runbook's backup into a region and wait for the outcome.

`velero restore create NAME --from-backup B --include-namespaces NS` only checks that the
Backup exists and creates a `velero.io/v1` Restore object; the Velero server does the rest.
This activity does the same through the Kubernetes API (no velero binary needed), with the
name the workflow derived from its id, so a retry finds the Restore it already created
(409 -> read it) instead of starting a second one. Then it polls `status.phase`,
heartbeating it, until Velero reports a terminal phase.

`backups.velero.backup` names a Backup or a Schedule. For a Schedule the Restore carries
`spec.scheduleName`, as `velero restore create --from-schedule S` submits it: Velero then
restores "the most recent successful backup created from this schedule" (Restore API type,
https://velero.io/docs/v1.19/api-types/restore/) — the Schedule's Backups are labelled
`velero.io/schedule-name=S`; the newest Completed one by `status.completionTimestamp` is
the one `backup_to_restore` reports for the RPO check.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities import contracts
from activities.contracts import (
    ErrorType,
    VeleroBackupInfo,
    VeleroBackupInput,
    VeleroRestoreInput,
    VeleroRestoreResult,
)
from activities.kube.clusters import (
    MIN_POLL_SECONDS,
    REQUEST_TIMEOUT,
    ClusterActivities,
    api_errors,
    classify,
    cluster_client,
    pause,
)
from activities.waits import PolledWait
from drpilot.domain.runbook import Runbook, Velero

GROUP, VERSION = "velero.io", "v1"
POLL_SECONDS = 5.0  # simulated seconds between phase polls (divided by speed)
# Phases that will not change any more. Velero also has WaitingForPluginOperations[PartiallyFailed]
# and Finalizing[PartiallyFailed]; the *PartiallyFailed ones already decide the outcome.
FAILED_PHASES = ("PartiallyFailed", "Failed", "FailedValidation")


SCHEDULE_LABEL = "velero.io/schedule-name"


def restore_manifest(
    name: str, runbook: Runbook, velero: Velero, *, from_schedule: bool = False
) -> dict[str, Any]:
    """The Restore `velero restore create NAME --from-backup B --include-namespaces NS`
    submits (`--from-schedule B` when `from_schedule`)."""
    source = {"scheduleName": velero.backup} if from_schedule else {"backupName": velero.backup}
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Restore",
        "metadata": {
            "name": name,
            "namespace": velero.namespace,
            # `--labels`: lets an operator find drpilot's restores (`-l app.kubernetes.io/managed-by=drpilot`).
            "labels": {
                "app.kubernetes.io/managed-by": "drpilot",
                "drpilot.io/runbook": runbook.name[:63].rstrip("-."),
            },
        },
        "spec": {
            **source,
            "includedNamespaces": list(velero.namespaces),
            # What the CLI serialises for flags left unset: the server applies its defaults.
            "hooks": {},
            "itemOperationTimeout": "0s",
            "uploaderConfig": {},
        },
    }


class VeleroActivities(ClusterActivities):
    default_poll_seconds = POLL_SECONDS

    def all(self) -> list[Callable[..., Any]]:
        return [self.restore, self.backup_to_restore]

    @activity.defn(name=contracts.VELERO_BACKUP)
    def backup_to_restore(self, input: VeleroBackupInput) -> VeleroBackupInfo:
        """Read-only: the Backup a restore would use now, and when it completed."""
        api = _VeleroApi(self.clients, input.runbook, input.region, "read Velero backups")
        backup, schedule = api.source()
        status = backup.get("status") or {}
        return VeleroBackupInfo(
            name=backup["metadata"]["name"],
            schedule=schedule,
            phase=status.get("phase") or "New",
            completed_at=_parse_time(status.get("completionTimestamp")),
        )

    @activity.defn(name=contracts.VELERO_RESTORE)
    def restore(self, input: VeleroRestoreInput) -> VeleroRestoreResult:
        api = _VeleroApi(self.clients, input.runbook, input.region, "restore a Velero backup")
        velero, objects, context, ns = api.velero, api.objects, api.context, api.ns
        name = input.restore_name
        failure, call, get = api.failure, api.call, api.get

        # Check before acting: a previous attempt may already have created it.
        restore = call(lambda: get("restores", name), f"Restore {ns}/{name}", "get")
        created = False
        if restore is None:
            # As the CLI does: refuse to create a Restore of a Backup that is not there (a
            # Schedule with no Completed Backup is refused alike: Velero would fail it).
            _, schedule = api.source()
            try:
                restore = objects.create_namespaced_custom_object(
                    GROUP,
                    VERSION,
                    ns,
                    "restores",
                    restore_manifest(name, input.runbook, velero, from_schedule=schedule is not None),
                    _request_timeout=REQUEST_TIMEOUT,
                )
                created = True
            except ApiException as exc:
                if exc.status != 409:
                    raise failure(exc, f"Restore {ns}/{name}", "create") from exc
                # AlreadyExists: an attempt that died between its create and its first heartbeat.
                restore = call(lambda: get("restores", name), f"Restore {ns}/{name}", "get")
            except api_errors() as exc:
                raise failure(exc, f"Restore {ns}/{name}", "create") from exc
        if restore is None:
            raise ApplicationError(
                f"Restore {ns}/{name} vanished right after it was created; retrying",
                type=ErrorType.VELERO_RESTORE_VANISHED,
            )
        wanted = velero.backup
        spec = restore.get("spec") or {}
        # From the schedule, Velero fills backupName with the Backup it chose; scheduleName stays.
        source = spec.get("scheduleName") or spec.get("backupName")
        if source != wanted:
            raise ApplicationError(
                f"Restore {ns}/{name} in kube context {context} already exists but restores backup "
                f"{source!r}, not {wanted!r}; delete it "
                f"(`velero restore delete {name}`) or start the run under a new workflow id",
                type=ErrorType.VELERO_RESTORE_NAME_TAKEN,
                non_retryable=True,
            )

        # A fresh wait window per attempt: the Restore keeps running server-side, so a retry
        # after a timeout simply waits on the same object again (the retry policy bounds it).
        deadline = time.time() + input.timeout_seconds
        poll = max(MIN_POLL_SECONDS, self.poll_seconds / input.speed)
        wait = PolledWait("velero", input.speed, self.poll_seconds)
        while True:
            status = restore.get("status") or {}
            phase = status.get("phase") or "New"
            progress = status.get("progress") or {}
            activity.heartbeat(
                {
                    "name": name,
                    "phase": phase,
                    "created": created,
                    "itemsRestored": progress.get("itemsRestored", 0),
                    "totalItems": progress.get("totalItems", 0),
                }
            )
            if phase == "Completed":
                restored = (restore.get("spec") or {}).get("backupName") or ""
                backup = (
                    call(lambda restored=restored: get("backups", restored), f"Backup {ns}/{restored}", "get")
                    if restored
                    else None
                )
                return VeleroRestoreResult(
                    name=name,
                    phase=phase,
                    errors=int(status.get("errors", 0)),
                    warnings=int(status.get("warnings", 0)),
                    created=created,
                    backup=restored,
                    backup_completed_at=_parse_time(((backup or {}).get("status") or {}).get("completionTimestamp")),
                    waits=wait.done(),
                )
            if phase in FAILED_PHASES or phase.endswith("PartiallyFailed"):
                raise _failed(name, ns, context, input.region, phase, status)
            wait.pending()
            if time.time() >= deadline:
                raise ApplicationError(
                    f"Velero Restore {ns}/{name} in kube context {context} (region {input.region}) is still "
                    f"{phase} after {input.timeout_seconds:.0f}s ({progress.get('itemsRestored', 0)}/"
                    f"{progress.get('totalItems', '?')} items); it keeps running in the cluster and a retry "
                    f"waits on the same Restore",
                    {"name": name, "phase": phase},
                    type=ErrorType.VELERO_RESTORE_TIMEOUT,
                )
            pause(min(poll, max(0.0, deadline - time.time())))
            restore = call(lambda: get("restores", name), f"Restore {ns}/{name}", "get")
            if restore is None:
                raise ApplicationError(
                    f"Velero Restore {ns}/{name} was deleted while drpilot waited on it (kube context "
                    f"{context}); the run must decide whether to restore again",
                    type=ErrorType.VELERO_RESTORE_DELETED,
                    non_retryable=True,
                )


class _VeleroApi:
    """The runbook's Velero in one region's cluster: calls with drpilot's error messages,
    and which Backup its `backups.velero.backup` names."""

    def __init__(self, clients: Mapping[str, k8s.ApiClient], runbook: Runbook, region: str, doing: str):
        velero = runbook.spec.backups.velero
        if velero is None:
            raise ApplicationError(
                f"runbook {runbook.name} has no spec.backups.velero; add the backup to restore from "
                f"or leave the Velero step out",
                type=ErrorType.VELERO_NOT_CONFIGURED,
                non_retryable=True,
            )
        self.runbook, self.region, self.velero, self.ns = runbook, region, velero, velero.namespace
        self.context, api = cluster_client(clients, runbook, region, doing)
        self.objects = k8s.CustomObjectsApi(api)

    def failure(self, exc: BaseException, resource: str, verb: str) -> ApplicationError:
        return classify(
            exc,
            context=self.context,
            region=self.region,
            resource=resource,
            not_found_fix=(
                f"is Velero installed in namespace {self.ns} of that cluster (`velero install`), and is "
                f"spec.backups.velero.namespace right in runbook {self.runbook.name}?"
            ),
            rbac=(
                f"RBAC verbs get, create on restores.velero.io and get, list on backups.velero.io "
                f"and get on schedules.velero.io in namespace {self.ns} of context {self.context} "
                f"(needed: {verb})"
            ),
        )

    def call(self, fn: Callable[[], Any], resource: str, verb: str) -> Any:
        try:
            return fn()
        except api_errors() as exc:
            raise self.failure(exc, resource, verb) from exc

    def get(self, plural: str, obj_name: str) -> dict[str, Any] | None:
        try:
            return self.objects.get_namespaced_custom_object(
                GROUP, VERSION, self.ns, plural, obj_name, _request_timeout=REQUEST_TIMEOUT
            )
        except ApiException as exc:
            if exc.status == 404 and _is_object_not_found(exc):
                return None
            raise

    def source(self) -> tuple[dict[str, Any], str | None]:
        """(the Backup a restore uses now, the Schedule it came from or None). A Backup of
        that name wins, as `--from-backup` would; else the Schedule's newest Completed
        Backup. Neither is non-retryable: the runbook names something that is not there."""
        ns, wanted = self.ns, self.velero.backup
        backup = self.call(lambda: self.get("backups", wanted), f"Backup {ns}/{wanted}", "get")
        if backup is not None:
            return backup, None
        schedule = self.call(lambda: self.get("schedules", wanted), f"Schedule {ns}/{wanted}", "get")
        if schedule is None:
            raise self._not_found(f"neither a Velero Backup nor a Schedule named {wanted!r}", "velero backup get")
        listed = self.call(
            lambda: self.objects.list_namespaced_custom_object(
                GROUP, VERSION, ns, "backups", label_selector=f"{SCHEDULE_LABEL}={wanted}",
                _request_timeout=REQUEST_TIMEOUT,
            ),
            f"Backups of Schedule {ns}/{wanted}",
            "list",
        )
        done = [
            b for b in listed.get("items", [])
            if (b.get("status") or {}).get("phase") == "Completed" and (b.get("status") or {}).get("completionTimestamp")
        ]
        if not done:
            raise self._not_found(
                f"Velero Schedule {wanted!r} has no Completed Backup yet", f"velero backup get -l {SCHEDULE_LABEL}={wanted}"
            )
        latest = max(done, key=lambda b: _parse_time(b["status"]["completionTimestamp"]) or datetime.min.replace(tzinfo=UTC))
        return latest, wanted

    def _not_found(self, what: str, check: str) -> ApplicationError:
        return ApplicationError(
            f"{what} in namespace {self.ns} of kube context {self.context} (region {self.region}); "
            f"check `{check}` there (it may have expired) and fix spec.backups.velero.backup in "
            f"runbook {self.runbook.name}",
            type=ErrorType.VELERO_BACKUP_NOT_FOUND,
            non_retryable=True,
        )


def _parse_time(text: str | None) -> datetime | None:
    """An RFC 3339 timestamp as Kubernetes writes them (…Z), or None."""
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def _is_object_not_found(exc: ApiException) -> bool:
    """404 for a missing object, not for a missing API (Velero's CRDs not installed)."""
    return "could not find the requested resource" not in (exc.body or "")


def _failed(
    name: str, ns: str, context: str, region: str, phase: str, status: dict[str, Any]
) -> ApplicationError:
    errors, warnings = int(status.get("errors", 0)), int(status.get("warnings", 0))
    why = []
    if status.get("validationErrors"):
        why.append("validation errors: " + "; ".join(status["validationErrors"]))
    if status.get("failureReason"):
        why.append(f"failure reason: {status['failureReason']}")
    return ApplicationError(
        f"Velero Restore {ns}/{name} in kube context {context} (region {region}) ended {phase} with "
        f"{errors} errors and {warnings} warnings"
        + (f" ({'; '.join(why)})" if why else "")
        + f"; see `velero restore describe {name} --details` and `velero restore logs {name}` "
        f"(or `kubectl --context {context} -n {ns} get restore {name} -o yaml`)",
        {
            "name": name,
            "phase": phase,
            "errors": errors,
            "warnings": warnings,
            "validationErrors": list(status.get("validationErrors") or []),
            "failureReason": status.get("failureReason", ""),
        },
        type=ErrorType.velero_restore_ended(phase),
        non_retryable=True,
    )

"""Restore a model version into a region from its archive (S3 Glacier, or Cloud Storage).

A Cloud Storage archive (Archive / Coldline class) needs no restore: its files are read at
once (retrieval is billed, which `drpilot runbook plan` says), so they count as restored
and are copied (a rewrite, or a streamed copy into S3) straight away.

What the region's copy lacks (missing, corrupt or archived files, by `Verifier`) is requested
from the archive at the tier tiers.py chooses, awaited, and copied into the region's bucket,
the manifest last. Progress is heartbeated per file (requested / restored / copied), so a
retried attempt neither re-requests restores nor re-copies files, and keeps the tiers it
chose first.
"""

from __future__ import annotations

import time

from botocore.exceptions import ClientError
from pydantic import BaseModel, Field
from temporalio import activity
from temporalio.exceptions import ApplicationError, CancelledError

from activities.artifacts.copies import Copier
from activities.artifacts.copies_state import Upload
from activities.artifacts.manifest import Manifest, ManifestEntry
from activities.artifacts.objects import ARCHIVED_CLASSES, Location, Stores
from activities.artifacts.progress import Beat, resumed
from activities.artifacts.s3_errors import error_code, s3_errors
from activities.artifacts.tiers import TIER_SECONDS, Tier, choose_tiers, slowest
from activities.artifacts.verify import Verifier, problem_keys, summary
from activities.contracts import (
    ARTIFACTS_SYNC,
    ErrorType,
    RestoreInput,
    RestoreResult,
    ScaledWait,
    VerifyResult,
)
from activities.waits import PolledWait
from drpilot.domain.runbook import Model

# How often a pending restore is polled (production seconds; divided by speed). Standard
# takes hours, so polling it every few seconds would only cost requests.
POLL_SECONDS = {"Expedited": 15.0, "Standard": 300.0, "Bulk": 900.0}
MIN_POLL_SECONDS = 0.01
RESTORE_DAYS = 1  # the restored copy only has to live until it is copied into the region


class RestoreProgress(BaseModel):
    """Heartbeat details of restore_from_archive: what is done, per file path."""

    tier: Tier  # the slowest tier requested (reported)
    tiers: dict[str, Tier] = Field(default_factory=dict)  # path -> tier, chosen once
    requested: list[str] = Field(default_factory=list)  # restore_object accepted
    restored: list[str] = Field(default_factory=list)  # readable in the archive
    copied: list[str] = Field(default_factory=list)  # copied into the region's bucket
    uploads: dict[str, Upload] = Field(default_factory=dict)  # multipart copies in flight


# Cloud Storage classes whose reads are billed per GB retrieved (Cloud Storage pricing,
# "Retrieval fees"); none of them delays a read.
BILLED_RETRIEVAL_CLASSES = ("NEARLINE", "COLDLINE", "ARCHIVE")


class FileRestore(BaseModel):
    """One file an emergency restore would bring back: from Glacier, in which tier and how
    long that takes; or from a Cloud Storage class read at once but billed per GB (`tier`
    None, `storage_class` named)."""

    path: str
    size: int
    tier: Tier | None = None
    seconds: tuple[float, float] = (0.0, 0.0)  # typical fastest, worst case
    storage_class: str | None = None


class ArchiveRestore:
    def __init__(self, objects: Stores, verifier: Verifier, copier: Copier):
        self.objects = objects
        self.verifier = verifier
        self.copier = copier

    def restore(self, model: Model, region: Location, input: RestoreInput) -> RestoreResult:
        progress = resumed(RestoreProgress)
        before, manifest = self.verifier.verify(model, region, input.region, beat=Beat(progress))
        if before.ok and progress is None:
            return RestoreResult(
                region=input.region, model=model.name, tier="none", restored=[], verify=before
            )
        archive = self._archive_of(model, input.region, region, before)
        wanted = [p.key.removeprefix(region.uri()) for p in before.problems]
        if manifest is None:
            # The region's own manifest is missing or unreadable: plan with the archive's and
            # bring it along.
            manifest = self._archive_manifest(model, archive, input.speed)
            before, _ = self.verifier.verify(model, region, input.region, manifest, beat=Beat(progress))
            wanted = [p.key.removeprefix(region.uri()) for p in before.problems] + [model.manifest]
        entries = {f.path: f for f in manifest.files}
        if progress is None:
            tiers = choose_tiers(input.budget_seconds, {p: _size(entries, p) for p in wanted})
            progress = RestoreProgress(tier=slowest(tiers.values()), tiers=tiers)
        # A file an earlier attempt copied that is broken again must be copied again.
        progress.copied = [p for p in progress.copied if p not in wanted]
        waits = self._bring_back(archive, region, wanted, progress, entries, model.manifest, input.speed)
        after, _ = self.verifier.verify(model, region, input.region, beat=Beat(progress))
        if not after.ok:
            raise ApplicationError(
                f"restored {model.name} {model.version} into {region.uri()} from {archive.uri()} "
                f"but it still has {summary(after)}: {problem_keys(after)}. The archive's copy does not "
                f"match the manifest. Fix: sync the model from a healthy region ({ARTIFACTS_SYNC}) "
                "and re-upload the archive.",
                type=ErrorType.ARTIFACTS_STILL_INVALID,
                non_retryable=True,
            )
        glacier = archive.scheme == "s3"  # a Cloud Storage archive is read at once: no tier
        return RestoreResult(
            region=input.region,
            model=model.name,
            tier=progress.tier if glacier else "none",
            restored=[region.uri(p) for p in progress.copied],
            verify=after,
            tiers=dict(progress.tiers) if glacier else {},
            waits=waits,
        )

    def _archive_of(self, model: Model, region_name: str, region: Location, before: VerifyResult) -> Location:
        if model.archive is None:
            raise ApplicationError(
                f"model {model.name} {model.version} in region {region_name} has "
                f"{summary(before)} and the runbook names no archive to restore from. Fix: "
                f"sync it from a healthy region ({ARTIFACTS_SYNC}) or upload it to {region.uri()}",
                type=ErrorType.ARTIFACTS_NOT_RESTORABLE,
                non_retryable=True,
            )
        return Location.parse(model.archive)

    def plan(self, model: Model, region: Location, input: RestoreInput) -> list[FileRestore]:
        """What `restore` would request now, file by file, with Glacier's time for each (for
        `drpilot runbook plan`); changes nothing."""
        before, manifest = self.verifier.verify(model, region, input.region)
        if before.ok:
            return []
        archive = self._archive_of(model, input.region, region, before)
        wanted = [p.key.removeprefix(region.uri()) for p in before.problems]
        if manifest is None:
            manifest, _ = self.verifier.read_manifest(archive, model.manifest, self.objects.listed(archive))
        entries = {f.path: f for f in (manifest.files if manifest else [])}
        listed = self.objects.listed(archive)
        if archive.scheme == "gs":
            return [
                FileRestore(path=p, size=_size(entries, p), storage_class=listed[p]["StorageClass"])
                for p in wanted
                if listed.get(p, {}).get("StorageClass") in BILLED_RETRIEVAL_CLASSES
            ]
        # Files the archive keeps readable (its manifest, usually) are copied, not restored.
        sizes = {
            p: _size(entries, p)
            for p in wanted
            if listed.get(p, {}).get("StorageClass") in ARCHIVED_CLASSES
        }
        tiers = choose_tiers(input.budget_seconds, sizes)
        return [FileRestore(path=p, size=s, tier=tiers[p], seconds=TIER_SECONDS[tiers[p]]) for p, s in sizes.items()]

    def _archive_manifest(self, model: Model, archive: Location, speed: float) -> Manifest:
        listed = self.objects.listed(archive)
        if model.manifest in listed and self.objects.state_of(archive, model.manifest) != "readable":
            # An archive that keeps its manifest in Glacier too: restore that one file first.
            progress = RestoreProgress(tier="Expedited", tiers={model.manifest: "Expedited"})
            self._bring_back(archive, None, [model.manifest], progress, {}, model.manifest, speed)
        manifest, problem = self.verifier.read_manifest(archive, model.manifest, listed)
        if manifest is None:
            where = problem.key if problem else archive.uri(model.manifest)
            raise ApplicationError(
                f"the region's manifest is missing and the archive's is unusable: {where} "
                f"({problem.detail if problem else 'unreadable'}). Fix: upload the manifest "
                f"for {model.name} {model.version} to {archive.uri()}.",
                type=ErrorType.ARTIFACTS_NOT_RESTORABLE,
                non_retryable=True,
            )
        return manifest

    def _bring_back(
        self,
        archive: Location,
        region: Location | None,
        plan: list[str],
        progress: RestoreProgress,
        entries: dict[str, ManifestEntry],
        manifest_name: str,
        speed: float,
    ) -> list[ScaledWait]:
        """Request, await and copy every path of `plan`, resuming from `progress`; how long
        Glacier kept us waiting (a rehearsal's RTO projection).

        `region` None only makes the archive's copies readable (no copy).
        """
        beat = Beat(progress)
        started = time.monotonic()
        wait: PolledWait | None = None
        absent = []
        for path in plan:
            if path in progress.requested or path in progress.restored:
                continue
            state = self.objects.state_of(archive, path)
            if state is None:
                absent.append(path)
            elif state == "readable":
                progress.restored.append(path)
            elif state == "ongoing":
                # Someone (an earlier run whose heartbeat was lost) already asked.
                progress.requested.append(path)
        if absent:
            raise ApplicationError(
                f"cannot restore {', '.join(absent)} into {region.uri() if region else archive.uri()}: "
                f"not in the archive either ({', '.join(archive.uri(p) for p in absent)}). Fix: sync "
                f"the model from a healthy region ({ARTIFACTS_SYNC}), or upload the files to "
                f"{archive.uri()}.",
                type=ErrorType.ARTIFACTS_NOT_RESTORABLE,
                non_retryable=True,
            )
        for path in plan:
            if path not in progress.requested and path not in progress.restored:
                self._request(archive, path, progress)
        files = [p for p in plan if p != manifest_name]
        while True:
            for path in plan:
                if path in progress.copied:
                    continue
                if path not in progress.restored:
                    if self.objects.state_of(archive, path) != "readable":
                        continue
                    _move(progress.requested, progress.restored, path)
                    beat()
                if region is None:
                    continue
                # The manifest goes last: a reader never sees a manifest whose files are absent.
                if path == manifest_name and any(p not in progress.copied for p in files):
                    continue
                if self.copier.copy(archive, region, path, entries.get(path), progress.uploads, beat):
                    progress.copied.append(path)
                else:
                    # The restored copy expired before we copied it: ask again.
                    progress.restored.remove(path)
                    self._request(archive, path, progress)
                beat()
            done = progress.restored if region is None else progress.copied
            if all(p in done for p in plan):
                return wait.done() if wait else []
            beat()
            waiting = [progress.tiers.get(p, progress.tier) for p in plan if p in progress.requested]
            fastest = min((POLL_SECONDS[t] for t in waiting), default=POLL_SECONDS[progress.tier])
            wait = wait or PolledWait("glacier", speed, fastest, started)
            wait.pending()
            self._sleep(max(fastest / speed, MIN_POLL_SECONDS), beat)

    def _request(self, archive: Location, path: str, progress: RestoreProgress) -> None:
        tier = progress.tiers.get(path, progress.tier)
        state, used = self._request_restore(archive, path, tier)
        if used != tier:
            progress.tiers[path] = used
            progress.tier = slowest(progress.tiers.values())
        (progress.restored if state == "readable" else progress.requested).append(path)
        Beat(progress)()

    def _request_restore(self, archive: Location, path: str, tier: Tier) -> tuple[str, Tier]:
        """Ask Glacier for a readable copy: ("readable" when it already is one, else
        "ongoing", the tier actually requested)."""
        request = {"Days": RESTORE_DAYS, "GlacierJobParameters": {"Tier": tier}}
        doing = f"requesting a {tier} restore of {archive.uri(path)}"
        with s3_errors(archive.bucket, doing, "s3:RestoreObject"):
            try:
                reply = self.objects.store("s3").s3.restore_object(
                    Bucket=archive.bucket, Key=archive.key(path), RestoreRequest=request
                )
            except ClientError as exc:
                code = error_code(exc)
                if code == "RestoreAlreadyInProgress":
                    return "ongoing", tier
                if code == "InvalidObjectState":  # not an archived class: readable as is
                    return "readable", tier
                if code == "GlacierExpeditedRetrievalNotAvailable" and tier == "Expedited":
                    # Expedited capacity is not guaranteed: Standard beats failing.
                    activity.logger.warning("expedited capacity unavailable for %s", path)
                    return self._request_restore(archive, path, "Standard")
                raise
        # 200 means a restored copy already exists; 202 means the restore was accepted.
        state = "readable" if reply["ResponseMetadata"]["HTTPStatusCode"] == 200 else "ongoing"
        return state, tier

    def _sleep(self, seconds: float, beat: Beat) -> None:
        """Sleep between polls of Glacier, heartbeating at least every 30 s: a Standard poll
        interval (5 min) is longer than the heartbeat timeout."""
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            activity.wait_for_cancelled_sync(min(left, 30.0))
            if activity.is_cancelled():
                raise CancelledError("restore cancelled while waiting for Glacier")
            beat()


def _size(entries: dict[str, ManifestEntry], path: str) -> int:
    entry = entries.get(path)
    return entry.size if entry else 0


def _move(source: list[str], target: list[str], item: str) -> None:
    if item in source:
        source.remove(item)
    if item not in target:
        target.append(item)

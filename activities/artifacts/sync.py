"""Sync a model version from a healthy region into another.

The source is verified first (a broken source is never spread); each file the target lacks
or holds wrong is copied (copies.py), its manifest last, and the target is verified after.
The files copied are heartbeated, so a retry does not copy them again.
"""

from __future__ import annotations

from pydantic import BaseModel, Field
from temporalio.exceptions import ApplicationError

from activities.artifacts.copies import Copier
from activities.artifacts.copies_state import Upload
from activities.artifacts.objects import Location, Stores
from activities.artifacts.progress import Beat, resumed
from activities.artifacts.verify import Verifier, problem_keys, summary
from activities.contracts import ARTIFACTS_RESTORE, ErrorType, SyncInput, SyncResult
from drpilot.domain.runbook import Model


class SyncProgress(BaseModel):
    """Heartbeat details of sync."""

    copied: list[str] = Field(default_factory=list)  # paths
    uploads: dict[str, Upload] = Field(default_factory=dict)


def sync(
    objects: Stores,
    verifier: Verifier,
    copier: Copier,
    model: Model,
    source: Location,
    target: Location,
    input: SyncInput,
) -> SyncResult:
    """Make `target` hold `source`'s files and manifest; the source must verify first."""
    progress = resumed(SyncProgress) or SyncProgress()
    beat = Beat(progress)
    checked, manifest = verifier.verify(model, source, input.source_region, beat=beat)
    if manifest is None or not checked.ok:
        raise ApplicationError(
            f"cannot sync {model.name} {model.version} from {input.source_region}: its copy at "
            f"{source.uri()} has {summary(checked)}: {problem_keys(checked)}. Fix: restore the source "
            f"region first ({ARTIFACTS_RESTORE}) or sync from another region.",
            type=ErrorType.SOURCE_NOT_HEALTHY,
            non_retryable=True,
        )
    listed = objects.listed(target)
    unchanged = 0
    for entry in manifest.files:
        # Files an earlier attempt copied are checked too (a HEAD): one broken since is
        # copied again rather than trusted from the heartbeat forever.
        if entry.path not in progress.uploads and verifier.check(target, entry, listed.get(entry.path))[0] is None:
            unchanged += entry.path not in progress.copied
            continue
        copier.copy(source, target, entry.path, entry, progress.uploads, beat)
        with beat.lock:
            if entry.path not in progress.copied:
                progress.copied.append(entry.path)
        beat()
    source_manifest = objects.read(source, model.manifest)
    target_manifest = objects.read(target, model.manifest) if model.manifest in listed else None
    if source_manifest != target_manifest:
        copier.copy(source, target, model.manifest, None, progress.uploads, beat)
        if model.manifest not in progress.copied:
            progress.copied.append(model.manifest)
    elif model.manifest not in progress.copied:
        unchanged += 1
    after, _ = verifier.verify(model, target, input.target_region, beat=beat)
    if not after.ok:
        raise ApplicationError(
            f"synced {model.name} {model.version} to {target.uri()} but it still has "
            f"{summary(after)}: {problem_keys(after)}; will retry",
            type=ErrorType.SYNC_INCOMPLETE,
        )
    return SyncResult(copied=[target.uri(p) for p in progress.copied], unchanged=unchanged, verify=after)

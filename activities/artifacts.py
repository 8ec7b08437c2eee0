"""Model artifacts in S3: verify a version in a region, restore it from the Glacier archive,
sync it between regions. Each activity is idempotent and safe to retry.

The manifest (`model.manifest` under each prefix) is the truth about a model version:
`{"model", "version", "files": [{"path", "size", "sha256"}]}`, sha256 in hex. A file is
checked against it by size, then by S3's own SHA-256 checksum when the object was a single
PUT (no read needed), else by reading the object and hashing it.

Emergency restore tier: Expedited (typically 1-5 minutes, files up to 250 MB) unless the
RTO budget is long enough for Standard's worst case (5 hours), which is much cheaper.
Progress is heartbeated per file (requested / restored / copied), so a retried attempt
neither re-requests restores nor re-copies files, and keeps the tier it chose first.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal, Self

from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError
from pydantic import BaseModel, Field
from temporalio import activity
from temporalio.exceptions import ApplicationError, CancelledError

from activities.contracts import (
    ARTIFACTS_RESTORE,
    ARTIFACTS_SYNC,
    ARTIFACTS_VERIFY,
    ArtifactInput,
    ArtifactProblem,
    RestoreInput,
    RestoreResult,
    SyncInput,
    SyncResult,
    VerifyResult,
)
from drpilot.runbook import Model, Runbook
from drpilot.settings import Settings

# Retrieval estimates (AWS S3 docs, "Archive retrieval options"), worst case.
EXPEDITED_SECONDS = 5 * 60
STANDARD_SECONDS = 5 * 3600
EXPEDITED_MAX_BYTES = 250 * 1024 * 1024
# How often a pending restore is polled (production seconds; divided by speed). Standard
# takes hours, so polling it every few seconds would only cost requests.
POLL_SECONDS = {"Expedited": 15.0, "Standard": 300.0}
MIN_POLL_SECONDS = 0.01
# CopyObject takes at most 5 GiB; above that the managed (multipart) copy is needed.
COPY_OBJECT_MAX_BYTES = 5 * 1024**3
ARCHIVED_CLASSES = {"GLACIER", "DEEP_ARCHIVE"}
RESTORE_DAYS = 1  # the restored copy only has to live until it is copied into the region

_RETRYABLE_CODES = {
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "RequestLimitExceeded",
    "TooManyRequestsException",
    "RequestTimeout",
    "InternalError",
    "ServiceUnavailable",
    "OperationAborted",
}
_ACCESS_CODES = {
    "AccessDenied",
    "AllAccessDisabled",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "AccountProblem",
    "InvalidToken",
    "ExpiredToken",
}


# --------------------------------------------------------------------------------- errors
def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _status(exc: ClientError) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)


@contextmanager
def _s3(bucket: str, doing: str, permission: str) -> Iterator[None]:
    """Turn an S3 failure into a retryable or non-retryable ApplicationError naming the bucket.

    `doing` says what was attempted ("reading s3://b/p/x"); `permission` the IAM action it
    needs, so an AccessDenied message carries its own fix.
    """
    try:
        yield
    except ClientError as exc:
        code, status = _code(exc), _status(exc)
        message = exc.response.get("Error", {}).get("Message", "") or str(exc)
        if code == "NoSuchBucket":
            raise ApplicationError(
                f"S3 bucket {bucket!r} does not exist ({doing}). Fix: create it, or correct the "
                f"runbook's artifacts / archive URI for this model.",
                type="NoSuchBucket",
                non_retryable=True,
            ) from None
        if code in _ACCESS_CODES or (status == 403 and code not in _RETRYABLE_CODES):
            raise ApplicationError(
                f"access denied to S3 bucket {bucket!r} ({doing}): {code} {message}. Fix: grant "
                f"the worker's IAM role {permission} on arn:aws:s3:::{bucket} and its objects "
                "(see infra/ for the policy), or check its credentials.",
                type="AccessDenied",
                non_retryable=True,
            ) from None
        if code in _RETRYABLE_CODES or status >= 500 or status == 429:
            raise ApplicationError(
                f"S3 is throttling or failing ({code or status}) while {doing}; will retry: {message}",
                type="S3Unavailable",
            ) from None
        raise ApplicationError(
            f"S3 refused {doing}: {code or status} {message}",
            type=f"S3{code or status}",
            non_retryable=True,
        ) from None
    except NoCredentialsError:
        raise ApplicationError(
            f"no AWS credentials for S3 while {doing}: give the worker an AWS role or AWS_* "
            "credentials",
            type="S3NoCredentials",
            non_retryable=True,
        ) from None
    except BotoCoreError as exc:
        # Connection refused / reset, read timeouts: the endpoint may come back.
        raise ApplicationError(
            f"cannot reach S3 while {doing}: {exc}; will retry", type="S3Unreachable"
        ) from None


# ------------------------------------------------------------------------------ locations
@dataclass(frozen=True)
class Location:
    """One model version's prefix in one bucket (a region's copy or the archive)."""

    bucket: str
    prefix: str  # ends with "/" (or is empty)

    @classmethod
    def parse(cls, uri: str) -> Location:
        bucket, _, prefix = uri.removeprefix("s3://").partition("/")
        if prefix and not prefix.endswith("/"):
            prefix += "/"
        return cls(bucket, prefix)

    def key(self, path: str) -> str:
        return self.prefix + path

    def uri(self, path: str = "") -> str:
        return f"s3://{self.bucket}/{self.prefix}{path}"


class ManifestEntry(BaseModel):
    path: str
    size: int = Field(ge=0)
    sha256: str


class Manifest(BaseModel):
    model: str | None = None
    version: str | None = None
    files: list[ManifestEntry]

    @property
    def bytes(self) -> int:
        return sum(f.size for f in self.files)


class RestoreProgress(BaseModel):
    """Heartbeat details of restore_from_archive: what is done, per file path."""

    tier: Literal["Expedited", "Standard"]
    requested: list[str] = Field(default_factory=list)  # restore_object accepted
    restored: list[str] = Field(default_factory=list)  # readable in the archive
    copied: list[str] = Field(default_factory=list)  # copied into the region's bucket


def _model(runbook: Runbook, name: str, version: str) -> Model:
    for model in runbook.spec.models:
        if model.name == name and model.version == version:
            return model
    known = ", ".join(f"{m.name} {m.version}" for m in runbook.spec.models) or "none"
    raise ApplicationError(
        f"model {name} {version} is not in runbook {runbook.name}'s spec.models (it has: {known})",
        type="UnknownModel",
        non_retryable=True,
    )


def _region_location(runbook: Runbook, model: Model, region: str) -> Location:
    uri = model.artifacts.get(region)
    if uri is None:
        raise ApplicationError(
            f"model {model.name} has no artifacts location for region {region!r} in runbook "
            f"{runbook.name}; add spec.models[].artifacts.{region}",
            type="UnknownRegion",
            non_retryable=True,
        )
    return Location.parse(uri)


def _b64_to_hex(value: str) -> str:
    return base64.b64decode(value).hex()


def _restore_state(head: dict[str, Any]) -> Literal["readable", "ongoing", "archived"]:
    if head.get("StorageClass") not in ARCHIVED_CLASSES:
        return "readable"
    restore = head.get("Restore") or ""
    if 'ongoing-request="true"' in restore:
        return "ongoing"
    if 'ongoing-request="false"' in restore:
        return "readable"
    return "archived"


# ------------------------------------------------------------------------------ activities
class ArtifactActivities:
    def __init__(self, s3: Any):
        self._s3 = s3

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        import boto3
        from botocore.config import Config

        # AWS_ENDPOINT_URL(_S3) and credentials come from the environment, as boto3 reads them.
        config = Config(
            retries={"mode": "standard", "max_attempts": 4},
            connect_timeout=5,
            read_timeout=60,
        )
        return cls(boto3.client("s3", config=config))

    def all(self) -> list[Callable]:
        return [self.verify, self.restore_from_archive, self.sync]

    # ---------------------------------------------------------------- verify
    @activity.defn(name=ARTIFACTS_VERIFY)
    def verify(self, input: ArtifactInput) -> VerifyResult:
        model = _model(input.runbook, input.model, input.version)
        where = _region_location(input.runbook, model, input.region)
        result, _ = self._verify(model, where, input.region)
        return result

    def _verify(
        self, model: Model, where: Location, region: str, manifest: Manifest | None = None
    ) -> tuple[VerifyResult, Manifest | None]:
        """Check `where` against its own manifest (or the one given); never raises for content."""
        listed = self._list(where)
        problems: list[ArtifactProblem] = []
        if manifest is None:
            manifest, problem = self._read_manifest(where, model.manifest, listed)
            if problem is not None:
                problems.append(problem)
        if manifest is not None:
            for entry in manifest.files:
                problem = self._check(where, entry, listed.get(entry.path))
                if problem is not None:
                    problems.append(problem)
        result = VerifyResult(
            region=region,
            model=model.name,
            version=model.version,
            files=len(manifest.files) if manifest else 0,
            bytes=manifest.bytes if manifest else 0,
            problems=problems,
        )
        return result, manifest

    def _list(self, where: Location) -> dict[str, dict[str, Any]]:
        listed: dict[str, dict[str, Any]] = {}
        with _s3(where.bucket, f"listing {where.uri()}", "s3:ListBucket"):
            pages = self._s3.get_paginator("list_objects_v2").paginate(
                Bucket=where.bucket, Prefix=where.prefix
            )
            for page in pages:
                for obj in page.get("Contents", []):
                    listed[obj["Key"][len(where.prefix) :]] = obj
        return listed

    def _read(self, where: Location, path: str) -> bytes:
        with _s3(where.bucket, f"reading {where.uri(path)}", "s3:GetObject"):
            return self._s3.get_object(Bucket=where.bucket, Key=where.key(path))["Body"].read()

    def _read_manifest(
        self, where: Location, name: str, listed: dict[str, dict[str, Any]]
    ) -> tuple[Manifest | None, ArtifactProblem | None]:
        if name not in listed:
            return None, ArtifactProblem(
                key=where.uri(name), problem="missing", detail="no manifest"
            )
        archived = listed[name].get("StorageClass") in ARCHIVED_CLASSES
        if archived and self._archive_state(where, name) not in ("readable", None):
            return None, ArtifactProblem(
                key=where.uri(name), problem="archived", detail="manifest is in Glacier"
            )
        body = self._read(where, name)
        try:
            return Manifest.model_validate_json(body), None
        except ValueError as exc:
            detail = f"not a valid manifest: {str(exc).splitlines()[0]}"
            return None, ArtifactProblem(key=where.uri(name), problem="corrupt", detail=detail)

    def _head(self, where: Location, path: str) -> dict[str, Any] | None:
        """HEAD with the stored checksum; None when the object does not exist."""
        with _s3(where.bucket, f"reading {where.uri(path)}", "s3:GetObject"):
            try:
                return self._s3.head_object(
                    Bucket=where.bucket, Key=where.key(path), ChecksumMode="ENABLED"
                )
            except ClientError as exc:
                # HEAD has no body, so a missing key is a bare 404 (no NoSuchKey code).
                if _status(exc) == 404 and _code(exc) in ("404", "NoSuchKey", "NotFound"):
                    return None
                raise

    def _sha256(self, where: Location, path: str) -> str:
        digest = hashlib.sha256()
        with _s3(where.bucket, f"reading {where.uri(path)}", "s3:GetObject"):
            body = self._s3.get_object(Bucket=where.bucket, Key=where.key(path))["Body"]
            for chunk in body.iter_chunks(1024 * 1024):
                digest.update(chunk)
        return digest.hexdigest()

    def _check(
        self, where: Location, entry: ManifestEntry, listed: dict[str, Any] | None
    ) -> ArtifactProblem | None:
        key = where.uri(entry.path)
        if listed is None:
            return ArtifactProblem(key=key, problem="missing")
        if listed["Size"] != entry.size:
            return ArtifactProblem(
                key=key,
                problem="corrupt",
                detail=f"size {listed['Size']}, manifest says {entry.size}",
            )
        head = self._head(where, entry.path)
        if head is None:  # deleted between the listing and now
            return ArtifactProblem(key=key, problem="missing")
        if _restore_state(head) != "readable":
            return ArtifactProblem(
                key=key, problem="archived", detail=f"storage class {head.get('StorageClass')}"
            )
        stored = head.get("ChecksumSHA256")
        single_part = "-" not in str(head.get("ETag", "")) and stored and "-" not in stored
        actual = _b64_to_hex(stored) if single_part else self._sha256(where, entry.path)
        if actual != entry.sha256.lower():
            return ArtifactProblem(
                key=key, problem="corrupt", detail=f"sha256 {actual}, manifest says {entry.sha256}"
            )
        return None

    # ---------------------------------------------------------------- restore
    @activity.defn(name=ARTIFACTS_RESTORE)
    def restore_from_archive(self, input: RestoreInput) -> RestoreResult:
        model = _model(input.runbook, input.model, input.version)
        region = _region_location(input.runbook, model, input.region)
        progress = _progress_from_heartbeat()
        before, manifest = self._verify(model, region, input.region)
        if before.ok and progress is None:
            return RestoreResult(
                region=input.region, model=model.name, tier="none", restored=[], verify=before
            )
        if model.archive is None:
            raise ApplicationError(
                f"model {model.name} {model.version} in region {input.region} has "
                f"{_summary(before)} and the runbook names no archive to restore from. Fix: "
                f"sync it from a healthy region ({ARTIFACTS_SYNC}) or upload it to {region.uri()}",
                type="ArtifactsNotRestorable",
                non_retryable=True,
            )
        archive = Location.parse(model.archive)
        wanted = [p.key.removeprefix(region.uri()) for p in before.problems]
        if manifest is None:
            # The region's own manifest is missing or unreadable: plan with the archive's and
            # bring it along.
            manifest = self._archive_manifest(model, archive, input.speed)
            before, _ = self._verify(model, region, input.region, manifest)
            wanted = [p.key.removeprefix(region.uri()) for p in before.problems] + [model.manifest]
        sizes = {f.path: f.size for f in manifest.files}
        if progress is None:
            progress = RestoreProgress(
                tier=choose_tier(input.budget_seconds, [sizes.get(p, 0) for p in wanted])
            )
        # A file an earlier attempt copied that is broken again must be copied again.
        progress.copied = [p for p in progress.copied if p not in wanted]
        self._bring_back(archive, region, wanted, progress, sizes, model.manifest, input.speed)
        after, _ = self._verify(model, region, input.region)
        if not after.ok:
            raise ApplicationError(
                f"restored {model.name} {model.version} into {region.uri()} from {archive.uri()} "
                f"but it still has {_summary(after)}: {_keys(after)}. The archive's copy does not "
                f"match the manifest. Fix: sync the model from a healthy region ({ARTIFACTS_SYNC}) "
                "and re-upload the archive.",
                type="ArtifactsStillInvalid",
                non_retryable=True,
            )
        return RestoreResult(
            region=input.region,
            model=model.name,
            tier=progress.tier,
            restored=[region.uri(p) for p in progress.copied],
            verify=after,
        )

    def _archive_manifest(self, model: Model, archive: Location, speed: float) -> Manifest:
        listed = self._list(archive)
        if model.manifest in listed and self._archive_state(archive, model.manifest) != "readable":
            # An archive that keeps its manifest in Glacier too: restore that one file first.
            progress = RestoreProgress(tier="Expedited")
            self._bring_back(archive, None, [model.manifest], progress, {}, model.manifest, speed)
        manifest, problem = self._read_manifest(archive, model.manifest, listed)
        if manifest is None:
            where = problem.key if problem else archive.uri(model.manifest)
            raise ApplicationError(
                f"the region's manifest is missing and the archive's is unusable: {where} "
                f"({problem.detail if problem else 'unreadable'}). Fix: upload the manifest "
                f"for {model.name} {model.version} to {archive.uri()}.",
                type="ArtifactsNotRestorable",
                non_retryable=True,
            )
        return manifest

    def _bring_back(
        self,
        archive: Location,
        region: Location | None,
        plan: list[str],
        progress: RestoreProgress,
        sizes: dict[str, int],
        manifest_name: str,
        speed: float,
    ) -> None:
        """Request, await and copy every path of `plan`, resuming from `progress`.

        `region` None only makes the archive's copies readable (no copy).
        """
        absent = []
        for path in plan:
            if path in progress.requested or path in progress.restored:
                continue
            state = self._archive_state(archive, path)
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
                type="ArtifactsNotRestorable",
                non_retryable=True,
            )
        for path in plan:
            if path not in progress.requested and path not in progress.restored:
                self._request(archive, path, progress)
        files = [p for p in plan if p != manifest_name]
        interval = max(POLL_SECONDS[progress.tier] / speed, MIN_POLL_SECONDS)
        while True:
            for path in plan:
                if path in progress.copied:
                    continue
                if path not in progress.restored:
                    if self._archive_state(archive, path) != "readable":
                        continue
                    _move(progress.requested, progress.restored, path)
                    activity.heartbeat(progress.model_dump())
                if region is None:
                    continue
                # The manifest goes last: a reader never sees a manifest whose files are absent.
                if path == manifest_name and any(p not in progress.copied for p in files):
                    continue
                if self._copy(archive, region, path, sizes.get(path, 0)):
                    progress.copied.append(path)
                else:
                    # The restored copy expired before we copied it: ask again.
                    progress.restored.remove(path)
                    self._request(archive, path, progress)
                activity.heartbeat(progress.model_dump())
            done = progress.restored if region is None else progress.copied
            if all(p in done for p in plan):
                return
            activity.heartbeat(progress.model_dump())
            self._wait(interval)

    def _request(self, archive: Location, path: str, progress: RestoreProgress) -> None:
        state = self._request_restore(archive, path, progress.tier)
        (progress.restored if state == "readable" else progress.requested).append(path)
        activity.heartbeat(progress.model_dump())

    def _archive_state(self, archive: Location, path: str) -> str | None:
        """readable / ongoing / archived for the archive's copy; None when it has none."""
        head = self._head(archive, path)
        return None if head is None else _restore_state(head)

    def _request_restore(self, archive: Location, path: str, tier: str) -> str:
        """Ask Glacier for a readable copy; "readable" when it already is one, else "ongoing"."""
        request = {"Days": RESTORE_DAYS, "GlacierJobParameters": {"Tier": tier}}
        doing = f"requesting a {tier} restore of {archive.uri(path)}"
        with _s3(archive.bucket, doing, "s3:RestoreObject"):
            try:
                reply = self._s3.restore_object(
                    Bucket=archive.bucket, Key=archive.key(path), RestoreRequest=request
                )
            except ClientError as exc:
                code = _code(exc)
                if code == "RestoreAlreadyInProgress":
                    return "ongoing"
                if code == "InvalidObjectState":  # not an archived class: readable as is
                    return "readable"
                if code == "GlacierExpeditedRetrievalNotAvailable" and tier != "Standard":
                    # Expedited capacity is not guaranteed: Standard beats failing.
                    activity.logger.warning("expedited capacity unavailable for %s", path)
                    return self._request_restore(archive, path, "Standard")
                raise
        # 200 means a restored copy already exists; 202 means the restore was accepted.
        return "readable" if reply["ResponseMetadata"]["HTTPStatusCode"] == 200 else "ongoing"

    def _copy(self, source: Location, target: Location, path: str, size: int) -> bool:
        """Copy one file; False when the source is (again) only in Glacier."""
        doing = f"copying {source.uri(path)} to {target.uri(path)}"
        copy_source = {"Bucket": source.bucket, "Key": source.key(path)}
        with _s3(target.bucket, doing, "s3:GetObject on the source and s3:PutObject"):
            try:
                self._copy_object(copy_source, target, path, size)
            except ClientError as exc:
                if _code(exc) in ("ObjectNotInActiveTierError", "InvalidObjectState"):
                    return False
                raise
        return True

    def _copy_object(
        self, copy_source: dict[str, str], target: Location, path: str, size: int
    ) -> None:
        if size > COPY_OBJECT_MAX_BYTES:
            self._s3.copy(
                copy_source,
                target.bucket,
                target.key(path),
                ExtraArgs={"ChecksumAlgorithm": "SHA256"},
            )
        else:
            # Objects restored from Glacier are copied as STANDARD, with a fresh SHA-256.
            self._s3.copy_object(
                Bucket=target.bucket,
                Key=target.key(path),
                CopySource=copy_source,
                ChecksumAlgorithm="SHA256",
                StorageClass="STANDARD",
            )

    def _wait(self, seconds: float) -> None:
        activity.wait_for_cancelled_sync(seconds)
        if activity.is_cancelled():
            raise CancelledError("restore cancelled while waiting for Glacier")

    # ---------------------------------------------------------------- sync
    @activity.defn(name=ARTIFACTS_SYNC)
    def sync(self, input: SyncInput) -> SyncResult:
        model = _model(input.runbook, input.model, input.version)
        source = _region_location(input.runbook, model, input.source_region)
        target = _region_location(input.runbook, model, input.target_region)
        checked, manifest = self._verify(model, source, input.source_region)
        if manifest is None or not checked.ok:
            raise ApplicationError(
                f"cannot sync {model.name} {model.version} from {input.source_region}: its copy at "
                f"{source.uri()} has {_summary(checked)}: {_keys(checked)}. Fix: restore the source "
                f"region first ({ARTIFACTS_RESTORE}) or sync from another region.",
                type="SourceNotHealthy",
                non_retryable=True,
            )
        listed = self._list(target)
        copied: list[str] = []
        unchanged = 0
        for entry in manifest.files:
            if self._check(target, entry, listed.get(entry.path)) is None:
                unchanged += 1
                continue
            self._copy(source, target, entry.path, entry.size)
            copied.append(target.uri(entry.path))
            activity.heartbeat({"copied": copied})
        source_manifest = self._read(source, model.manifest)
        target_manifest = self._read(target, model.manifest) if model.manifest in listed else None
        if source_manifest != target_manifest:
            self._copy(source, target, model.manifest, len(source_manifest))
            copied.append(target.uri(model.manifest))
        else:
            unchanged += 1
        after, _ = self._verify(model, target, input.target_region)
        if not after.ok:
            raise ApplicationError(
                f"synced {model.name} {model.version} to {target.uri()} but it still has "
                f"{_summary(after)}: {_keys(after)}; will retry",
                type="SyncIncomplete",
            )
        return SyncResult(copied=copied, unchanged=unchanged, verify=after)


def choose_tier(budget_seconds: float, sizes: list[int]) -> Literal["Expedited", "Standard"]:
    """Standard when even its worst case fits the budget (it costs far less); else Expedited,
    unless a file is too large for Expedited retrieval, which leaves only Standard."""
    if budget_seconds >= STANDARD_SECONDS:
        return "Standard"
    if any(size > EXPEDITED_MAX_BYTES for size in sizes):
        return "Standard"
    return "Expedited"


def _progress_from_heartbeat() -> RestoreProgress | None:
    details = activity.info().heartbeat_details
    if not details:
        return None
    try:
        return RestoreProgress.model_validate(details[-1])
    except ValueError:
        # Details from an older shape: start over (every step is idempotent anyway).
        activity.logger.warning("ignoring unreadable heartbeat details: %r", details[-1])
        return None


def _summary(result: VerifyResult) -> str:
    counts: dict[str, int] = {}
    for p in result.problems:
        counts[p.problem] = counts.get(p.problem, 0) + 1
    return ", ".join(f"{n} {kind}" for kind, n in sorted(counts.items())) or "no problems"


def _keys(result: VerifyResult) -> str:
    return "; ".join(
        f"{p.key} ({p.problem}{': ' + p.detail if p.detail else ''})" for p in result.problems
    )


def _move(source: list[str], target: list[str], item: str) -> None:
    if item in source:
        source.remove(item)
    if item not in target:
        target.append(item)

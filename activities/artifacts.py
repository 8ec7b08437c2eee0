"""Model artifacts in S3: verify a version in a region, restore it from the Glacier archive,
sync it between regions. Each activity is idempotent and safe to retry.

The manifest (`model.manifest` under each prefix, format in activities/manifest.py) is the
truth about a model version. A file is checked against it by size, then by what S3 already
knows (its full-object or composite checksum, or its ETag) without reading the body; the
body is read and hashed only where S3 holds nothing the manifest records, or for every file
when the model says `verify: deep`. Files are checked in parallel; the activity heartbeats
per file and per chunk read, and a retried attempt skips the files an earlier one judged.

Copies (sync, restore) ask S3 for the checksum the manifest records, so the copy verifies
without a read too; objects above the multipart threshold (CopyObject takes at most 5 GiB)
are copied part by part with UploadPartCopy, parts in parallel, and a retried attempt
resumes the upload its heartbeat names instead of starting over.

Emergency restore tier, per object: the cheapest Glacier tier whose worst case fits the RTO
budget (or the slowest object's own fastest tier, which no choice can beat); Expedited only
for objects up to 250 MB. Progress is heartbeated per file (requested / restored / copied),
so a retried attempt neither re-requests restores nor re-copies files, and keeps the tiers
it chose first.
"""

from __future__ import annotations

import base64
import contextvars
import hashlib
import math
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal, Self, TypeVar

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
    ErrorType,
    RestoreInput,
    RestoreResult,
    ScaledWait,
    SyncInput,
    SyncResult,
    VerifyResult,
)
from activities.credentials import Rotating
from activities.manifest import Manifest, ManifestEntry, confirm, entry_from_s3, stored_checksums
from activities.waits import PolledWait
from drpilot.domain.runbook import Model, Runbook
from drpilot.domain.settings import Settings

Tier = Literal["Expedited", "Standard", "Bulk"]
# Retrieval times from S3 Glacier Flexible Retrieval (AWS S3 docs, "Understanding archive
# retrieval options"): (typical fastest, worst case) seconds.
TIER_SECONDS: dict[str, tuple[float, float]] = {
    "Expedited": (60, 5 * 60),
    "Standard": (3 * 3600, 5 * 3600),
    "Bulk": (5 * 3600, 12 * 3600),
}
EXPEDITED_SECONDS = TIER_SECONDS["Expedited"][1]
STANDARD_SECONDS = TIER_SECONDS["Standard"][1]
EXPEDITED_MAX_BYTES = 250 * 1024 * 1024
_CHEAPEST_FIRST: tuple[Tier, ...] = ("Bulk", "Standard", "Expedited")
# How often a pending restore is polled (production seconds; divided by speed). Standard
# takes hours, so polling it every few seconds would only cost requests.
POLL_SECONDS = {"Expedited": 15.0, "Standard": 300.0, "Bulk": 900.0}
MIN_POLL_SECONDS = 0.01
# CopyObject takes at most 5 GiB (S3 API reference, CopyObject); above that, UploadPartCopy.
COPY_OBJECT_MAX_BYTES = 5 * 1024**3
# Multipart limits (S3 user guide, "Amazon S3 multipart upload limits").
MIN_PART_BYTES = 5 * 1024**2
MAX_PARTS = 10_000
PART_BYTES = 256 * 1024**2  # copy part size when the manifest does not fix the layout
CHUNK_BYTES = 8 * 1024**2  # read size when hashing; one heartbeat per chunk
WORKERS = 8  # files verified / parts copied at once
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
                type=ErrorType.NO_SUCH_BUCKET,
                non_retryable=True,
            ) from None
        if code in _ACCESS_CODES or (status == 403 and code not in _RETRYABLE_CODES):
            raise ApplicationError(
                f"access denied to S3 bucket {bucket!r} ({doing}): {code} {message}. Fix: grant "
                f"the worker's IAM role {permission} on arn:aws:s3:::{bucket} and its objects "
                "(see infra/ for the policy), or check its credentials.",
                type=ErrorType.ACCESS_DENIED,
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


class CopiedPart(BaseModel):
    number: int
    etag: str
    checksums: dict[str, str] = Field(default_factory=dict)  # e.g. ChecksumSHA256 -> value


class Upload(BaseModel):
    """A multipart copy in flight: what a retry needs to resume it (or abort it)."""

    upload_id: str
    part_size: int
    parts: list[CopiedPart] = Field(default_factory=list)


class VerifyProgress(BaseModel):
    """Heartbeat details of verify: the files already judged, so a retry skips them."""

    checked: list[str] = Field(default_factory=list)  # confirmed against the manifest
    problems: list[ArtifactProblem] = Field(default_factory=list)


class RestoreProgress(BaseModel):
    """Heartbeat details of restore_from_archive: what is done, per file path."""

    tier: Tier  # the slowest tier requested (reported)
    tiers: dict[str, Tier] = Field(default_factory=dict)  # path -> tier, chosen once
    requested: list[str] = Field(default_factory=list)  # restore_object accepted
    restored: list[str] = Field(default_factory=list)  # readable in the archive
    copied: list[str] = Field(default_factory=list)  # copied into the region's bucket
    uploads: dict[str, Upload] = Field(default_factory=dict)  # multipart copies in flight


class SyncProgress(BaseModel):
    """Heartbeat details of sync."""

    copied: list[str] = Field(default_factory=list)  # paths
    uploads: dict[str, Upload] = Field(default_factory=dict)


class FileRestore(BaseModel):
    """One file an emergency restore would bring back, and how long Glacier takes for it."""

    path: str
    size: int
    tier: Tier
    seconds: tuple[float, float]  # typical fastest, worst case


_Progress = TypeVar("_Progress", bound=BaseModel)


class _Beat:
    """Heartbeats the caller's progress, from any of the threads working for the activity.

    Outside an activity (`drpilot runbook plan` calls verify directly) it does nothing.
    """

    def __init__(self, progress: BaseModel | None = None):
        self.progress = progress
        self.lock = threading.Lock()

    def __call__(self) -> None:
        if not activity.in_activity():
            return
        with self.lock:
            details = self.progress.model_dump(mode="json") if self.progress is not None else None
        if details is None:
            activity.heartbeat()
        else:
            activity.heartbeat(details)
        if activity.is_cancelled():
            raise CancelledError("artifacts activity cancelled")


def _details(kind: type[_Progress]) -> _Progress | None:
    """The last heartbeat's details of an earlier attempt, if they are `kind`'s."""
    if not activity.in_activity():
        return None
    details = activity.info().heartbeat_details
    if not details:
        return None
    try:
        return kind.model_validate(details[-1])
    except ValueError:
        # Details from an older shape: start over (every step is idempotent anyway).
        activity.logger.warning("ignoring unreadable heartbeat details: %r", details[-1])
        return None


def _model(runbook: Runbook, name: str, version: str) -> Model:
    for model in runbook.spec.models:
        if model.name == name and model.version == version:
            return model
    known = ", ".join(f"{m.name} {m.version}" for m in runbook.spec.models) or "none"
    raise ApplicationError(
        f"model {name} {version} is not in runbook {runbook.name}'s spec.models (it has: {known})",
        type=ErrorType.UNKNOWN_MODEL,
        non_retryable=True,
    )


def _region_location(runbook: Runbook, model: Model, region: str) -> Location:
    uri = model.artifacts.get(region)
    if uri is None:
        raise ApplicationError(
            f"model {model.name} has no artifacts location for region {region!r} in runbook "
            f"{runbook.name}; add spec.models[].artifacts.{region}",
            type=ErrorType.UNKNOWN_REGION,
            non_retryable=True,
        )
    return Location.parse(uri)


def _restore_state(head: dict[str, Any]) -> Literal["readable", "ongoing", "archived"]:
    if head.get("StorageClass") not in ARCHIVED_CLASSES:
        return "readable"
    restore = head.get("Restore") or ""
    if 'ongoing-request="true"' in restore:
        return "ongoing"
    if 'ongoing-request="false"' in restore:
        return "readable"
    return "archived"


def _parallel(workers: int, items: Iterable[Any], work: Callable[[Any], Any], done: Callable[[Any, Any], None]) -> None:
    """Run `work(item)` on a bounded pool; `done(item, result)` in the calling thread as each
    finishes. The first failure cancels what has not started and is raised."""
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="artifacts") as pool:
        # Each task runs in a copy of this context: it holds the activity's, so the threads
        # can heartbeat.
        pending: dict[Future, Any] = {
            pool.submit(contextvars.copy_context().run, work, item): item for item in items
        }
        try:
            while pending:
                finished, _ = wait(pending, return_when=FIRST_EXCEPTION)
                for future in finished:
                    item = pending.pop(future)
                    done(item, future.result())
        finally:
            for future in pending:
                future.cancel()


# ------------------------------------------------------------------------------ activities
class ArtifactActivities:
    def __init__(
        self,
        s3: Any,
        *,
        multipart_threshold: int = COPY_OBJECT_MAX_BYTES,
        part_bytes: int = PART_BYTES,
        workers: int = WORKERS,
    ):
        """`multipart_threshold`: objects larger than this are copied with UploadPartCopy
        (at most S3's 5 GiB CopyObject limit; tests lower it). `part_bytes`: the part size of
        such a copy when the manifest does not fix one."""
        if not MIN_PART_BYTES <= part_bytes <= COPY_OBJECT_MAX_BYTES:
            raise ValueError(f"part_bytes must be within {MIN_PART_BYTES}..{COPY_OBJECT_MAX_BYTES}")
        self._s3 = s3
        self._threshold = min(multipart_threshold, COPY_OBJECT_MAX_BYTES)
        self._part_bytes = part_bytes
        self._workers = workers

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        import boto3
        from botocore.config import Config

        # AWS_ENDPOINT_URL(_S3) and credentials come from the environment, as boto3 reads them.
        config = Config(
            retries={"mode": "standard", "max_attempts": 4},
            connect_timeout=5,
            read_timeout=60,
            max_pool_connections=WORKERS + 2,  # one per parallel file / part, and spare
        )
        # Rebuilt when the shared credentials / config files change (a rotated key), from a
        # new session: boto3's default session would keep the credentials it read first.
        return cls(Rotating(lambda: boto3.session.Session().client("s3", config=config)))

    def all(self) -> list[Callable]:
        return [self.verify, self.restore_from_archive, self.sync]

    # ---------------------------------------------------------------- verify
    @activity.defn(name=ARTIFACTS_VERIFY)
    def verify(self, input: ArtifactInput) -> VerifyResult:
        model = _model(input.runbook, input.model, input.version)
        where = _region_location(input.runbook, model, input.region)
        progress = _details(VerifyProgress) or VerifyProgress()
        result, _ = self._verify(model, where, input.region, progress=progress, beat=_Beat(progress))
        return result

    def _verify(
        self,
        model: Model,
        where: Location,
        region: str,
        manifest: Manifest | None = None,
        *,
        progress: VerifyProgress | None = None,
        beat: _Beat | None = None,
    ) -> tuple[VerifyResult, Manifest | None]:
        """Check `where` against its own manifest (or the one given); never raises for content.

        `progress` holds what an earlier attempt judged (skipped here) and receives each
        file's verdict; `beat` heartbeats the caller's progress per file and per chunk.
        """
        progress = progress if progress is not None else VerifyProgress()
        beat = beat if beat is not None else _Beat()
        listed = self._list(where)
        problems: list[ArtifactProblem] = []
        if manifest is None:
            manifest, problem = self._read_manifest(where, model.manifest, listed)
            if problem is not None:
                problems.append(problem)
        hashed = 0
        if manifest is not None:
            judged = set(progress.checked) | {p.key for p in progress.problems}
            todo = [e for e in manifest.files if e.path not in judged and where.uri(e.path) not in judged]
            deep = model.verify == "deep"

            def record(entry: ManifestEntry, verdict: tuple[ArtifactProblem | None, bool]) -> None:
                nonlocal hashed
                problem, read = verdict
                hashed += read
                with beat.lock:
                    if problem is None:
                        progress.checked.append(entry.path)
                    else:
                        progress.problems.append(problem)
                beat()

            _parallel(
                self._workers, todo, lambda e: self._check(where, e, listed.get(e.path), deep, beat), record
            )
            order = {where.uri(e.path): i for i, e in enumerate(manifest.files)}
            problems += sorted(progress.problems, key=lambda p: order.get(p.key, len(order)))
        result = VerifyResult(
            region=region,
            model=model.name,
            version=model.version,
            files=len(manifest.files) if manifest else 0,
            bytes=manifest.bytes if manifest else 0,
            problems=problems,
            manifest_created_at=listed[model.manifest].get("LastModified") if model.manifest in listed else None,
            hashed=hashed,
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

    def _hash(self, where: Location, path: str, beat: _Beat) -> tuple[str, str]:
        """(sha256 hex, crc32 base64) of the body, read in chunks, one heartbeat per chunk."""
        digest, crc = hashlib.sha256(), 0
        with _s3(where.bucket, f"reading {where.uri(path)}", "s3:GetObject"):
            body = self._s3.get_object(Bucket=where.bucket, Key=where.key(path))["Body"]
            for chunk in body.iter_chunks(CHUNK_BYTES):
                digest.update(chunk)
                crc = zlib.crc32(chunk, crc)
                beat()
        return digest.hexdigest(), base64.b64encode(crc.to_bytes(4, "big")).decode()

    def _check(
        self,
        where: Location,
        entry: ManifestEntry,
        listed: dict[str, Any] | None,
        deep: bool = False,
        beat: _Beat | None = None,
    ) -> tuple[ArtifactProblem | None, bool]:
        """(the file's problem or None, whether its body was read)."""
        key = where.uri(entry.path)
        if listed is None:
            return ArtifactProblem(key=key, problem="missing"), False
        if listed["Size"] != entry.size:
            detail = f"size {listed['Size']}, manifest says {entry.size}"
            return ArtifactProblem(key=key, problem="corrupt", detail=detail), False
        head = self._head(where, entry.path)
        if head is None:  # deleted between the listing and now
            return ArtifactProblem(key=key, problem="missing"), False
        if _restore_state(head) != "readable":
            detail = f"storage class {head.get('StorageClass')}"
            return ArtifactProblem(key=key, problem="archived", detail=detail), False
        verdict = confirm(entry, head)
        if verdict is not None and not verdict[0]:
            return ArtifactProblem(key=key, problem="corrupt", detail=verdict[1]), False
        if verdict is not None and not deep:
            return None, False
        if entry.sha256 is None and entry.crc32 is None:
            if verdict is not None:  # deep, but nothing to hash against: S3's word stands
                return None, False
            detail = (
                "S3 holds no checksum or ETag this manifest records, and it has no sha256 to hash "
                "the body against. Fix: regenerate it with `drpilot artifacts manifest --write`"
            )
            return ArtifactProblem(key=key, problem="corrupt", detail=detail), False
        sha256, crc32 = self._hash(where, entry.path, beat or _Beat())
        if entry.sha256 is not None and sha256 != entry.sha256.lower():
            detail = f"sha256 {sha256}, manifest says {entry.sha256}"
            return ArtifactProblem(key=key, problem="corrupt", detail=detail), True
        if entry.sha256 is None and crc32 != entry.crc32:
            detail = f"crc32 {crc32}, manifest says {entry.crc32}"
            return ArtifactProblem(key=key, problem="corrupt", detail=detail), True
        return None, True

    def manifest_of(self, where: Location, name: str) -> tuple[Manifest, int]:
        """The manifest an existing prefix deserves, from what S3 knows of each object, and
        how many bodies had to be read for it (objects S3 keeps no checksum of)."""
        listed = {p: o for p, o in self._list(where).items() if p != name and not p.endswith("/")}
        entries: dict[str, ManifestEntry] = {}
        hashed = 0

        def describe(path: str) -> tuple[ManifestEntry, bool]:
            head = self._head(where, path)
            if head is None:
                raise ApplicationError(f"{where.uri(path)} vanished while being described", type="S3Changed")
            parts = None
            if "-" in str(head.get("ETag", "")) and stored_checksums(head):
                # A multipart upload: whether its checksum is FULL_OBJECT or COMPOSITE, and
                # the parts, come from GetObjectAttributes (moto's HEAD leaves out the
                # x-amz-checksum-type and "-N" that S3's HEAD reports).
                kind, parts = self._object_parts(where, path)
                head = {**head, "ChecksumType": kind or head.get("ChecksumType")}
            entry, found = entry_from_s3(path, head, parts)
            if found:
                return entry, False
            sha256, _ = self._hash(where, path, _Beat())
            return entry.model_copy(update={"sha256": sha256}), True

        def done(path: str, result: tuple[ManifestEntry, bool]) -> None:
            nonlocal hashed
            entries[path], read = result
            hashed += read

        _parallel(self._workers, sorted(listed), describe, done)
        return Manifest(files=[entries[p] for p in sorted(entries)]), hashed

    def put_manifest(self, where: Location, name: str, body: bytes) -> None:
        with _s3(where.bucket, f"writing {where.uri(name)}", "s3:PutObject"):
            self._s3.put_object(
                Bucket=where.bucket, Key=where.key(name), Body=body, ChecksumAlgorithm="SHA256",
                ContentType="application/json",
            )

    def _object_parts(self, where: Location, path: str) -> tuple[str | None, list[dict[str, Any]] | None]:
        """(ChecksumType, each part's size and checksum) from GetObjectAttributes; parts
        None when S3 does not return them."""
        parts: list[dict[str, Any]] = []
        marker, kind = 0, None
        with _s3(where.bucket, f"reading the parts of {where.uri(path)}", "s3:GetObjectAttributes"):
            while True:
                reply = self._s3.get_object_attributes(
                    Bucket=where.bucket,
                    Key=where.key(path),
                    ObjectAttributes=["Checksum", "ObjectParts"],
                    MaxParts=1000,
                    PartNumberMarker=marker,
                )
                kind = (reply.get("Checksum") or {}).get("ChecksumType", kind)
                page = reply.get("ObjectParts") or {}
                parts += page.get("Parts", [])
                if not page.get("IsTruncated"):
                    return kind, parts or None
                marker = int(page["NextPartNumberMarker"])

    # ---------------------------------------------------------------- restore
    @activity.defn(name=ARTIFACTS_RESTORE)
    def restore_from_archive(self, input: RestoreInput) -> RestoreResult:
        model = _model(input.runbook, input.model, input.version)
        region = _region_location(input.runbook, model, input.region)
        progress = _details(RestoreProgress)
        before, manifest = self._verify(model, region, input.region, beat=_Beat(progress))
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
            before, _ = self._verify(model, region, input.region, manifest, beat=_Beat(progress))
            wanted = [p.key.removeprefix(region.uri()) for p in before.problems] + [model.manifest]
        entries = {f.path: f for f in manifest.files}
        if progress is None:
            tiers = choose_tiers(input.budget_seconds, {p: _size(entries, p) for p in wanted})
            progress = RestoreProgress(tier=_slowest(tiers.values()), tiers=tiers)
        # A file an earlier attempt copied that is broken again must be copied again.
        progress.copied = [p for p in progress.copied if p not in wanted]
        waits = self._bring_back(archive, region, wanted, progress, entries, model.manifest, input.speed)
        after, _ = self._verify(model, region, input.region, beat=_Beat(progress))
        if not after.ok:
            raise ApplicationError(
                f"restored {model.name} {model.version} into {region.uri()} from {archive.uri()} "
                f"but it still has {_summary(after)}: {_keys(after)}. The archive's copy does not "
                f"match the manifest. Fix: sync the model from a healthy region ({ARTIFACTS_SYNC}) "
                "and re-upload the archive.",
                type=ErrorType.ARTIFACTS_STILL_INVALID,
                non_retryable=True,
            )
        return RestoreResult(
            region=input.region,
            model=model.name,
            tier=progress.tier,
            restored=[region.uri(p) for p in progress.copied],
            verify=after,
            tiers=dict(progress.tiers),
            waits=waits,
        )

    def _archive_of(self, model: Model, region_name: str, region: Location, before: VerifyResult) -> Location:
        if model.archive is None:
            raise ApplicationError(
                f"model {model.name} {model.version} in region {region_name} has "
                f"{_summary(before)} and the runbook names no archive to restore from. Fix: "
                f"sync it from a healthy region ({ARTIFACTS_SYNC}) or upload it to {region.uri()}",
                type=ErrorType.ARTIFACTS_NOT_RESTORABLE,
                non_retryable=True,
            )
        return Location.parse(model.archive)

    def restore_plan(self, input: RestoreInput) -> list[FileRestore]:
        """What restore_from_archive would request now, file by file, with Glacier's time for
        each (for `drpilot runbook plan`); changes nothing."""
        model = _model(input.runbook, input.model, input.version)
        region = _region_location(input.runbook, model, input.region)
        before, manifest = self._verify(model, region, input.region)
        if before.ok:
            return []
        archive = self._archive_of(model, input.region, region, before)
        wanted = [p.key.removeprefix(region.uri()) for p in before.problems]
        if manifest is None:
            manifest, _ = self._read_manifest(archive, model.manifest, self._list(archive))
        entries = {f.path: f for f in (manifest.files if manifest else [])}
        listed = self._list(archive)
        # Files the archive keeps readable (its manifest, usually) are copied, not restored.
        sizes = {
            p: _size(entries, p)
            for p in wanted
            if listed.get(p, {}).get("StorageClass") in ARCHIVED_CLASSES
        }
        tiers = choose_tiers(input.budget_seconds, sizes)
        return [FileRestore(path=p, size=s, tier=tiers[p], seconds=TIER_SECONDS[tiers[p]]) for p, s in sizes.items()]

    def _archive_manifest(self, model: Model, archive: Location, speed: float) -> Manifest:
        listed = self._list(archive)
        if model.manifest in listed and self._archive_state(archive, model.manifest) != "readable":
            # An archive that keeps its manifest in Glacier too: restore that one file first.
            progress = RestoreProgress(tier="Expedited", tiers={model.manifest: "Expedited"})
            self._bring_back(archive, None, [model.manifest], progress, {}, model.manifest, speed)
        manifest, problem = self._read_manifest(archive, model.manifest, listed)
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
        beat = _Beat(progress)
        started = time.monotonic()
        wait: PolledWait | None = None
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
                    if self._archive_state(archive, path) != "readable":
                        continue
                    _move(progress.requested, progress.restored, path)
                    beat()
                if region is None:
                    continue
                # The manifest goes last: a reader never sees a manifest whose files are absent.
                if path == manifest_name and any(p not in progress.copied for p in files):
                    continue
                if self._copy(archive, region, path, entries.get(path), progress.uploads, beat):
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
            self._wait(max(fastest / speed, MIN_POLL_SECONDS), beat)

    def _request(self, archive: Location, path: str, progress: RestoreProgress) -> None:
        tier = progress.tiers.get(path, progress.tier)
        state, used = self._request_restore(archive, path, tier)
        if used != tier:
            progress.tiers[path] = used
            progress.tier = _slowest(progress.tiers.values())
        (progress.restored if state == "readable" else progress.requested).append(path)
        _Beat(progress)()

    def _archive_state(self, archive: Location, path: str) -> str | None:
        """readable / ongoing / archived for the archive's copy; None when it has none."""
        head = self._head(archive, path)
        return None if head is None else _restore_state(head)

    def _request_restore(self, archive: Location, path: str, tier: Tier) -> tuple[str, Tier]:
        """Ask Glacier for a readable copy: ("readable" when it already is one, else
        "ongoing", the tier actually requested)."""
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

    # ---------------------------------------------------------------- copies
    def _copy(
        self,
        source: Location,
        target: Location,
        path: str,
        entry: ManifestEntry | None,
        uploads: dict[str, Upload],
        beat: _Beat,
    ) -> bool:
        """Copy one file asking S3 for the checksum the manifest records; False when the
        source is (again) only in Glacier."""
        doing = f"copying {source.uri(path)} to {target.uri(path)}"
        copy_source = {"Bucket": source.bucket, "Key": source.key(path)}
        size = entry.size if entry else 0
        algorithm = entry.full_object_algorithm if entry else None
        parts = entry.parts if entry else None
        # A composite checksum follows from the part layout: a copy with the same layout
        # confirms against the manifest's parts without a read, in S3 and the twin alike.
        keep_layout = parts is not None and algorithm is None
        with _s3(target.bucket, doing, "s3:GetObject on the source and s3:PutObject"):
            try:
                if size > self._threshold or keep_layout:
                    self._multipart_copy(copy_source, target, path, entry, uploads, beat)
                else:
                    # Objects restored from Glacier are copied as STANDARD.
                    self._s3.copy_object(
                        Bucket=target.bucket,
                        Key=target.key(path),
                        CopySource=copy_source,
                        ChecksumAlgorithm=algorithm or "SHA256",
                        StorageClass="STANDARD",
                    )
            except ClientError as exc:
                if _code(exc) in ("ObjectNotInActiveTierError", "InvalidObjectState"):
                    self._abort(target, path, uploads)
                    return False
                raise
            except ApplicationError as exc:
                if exc.non_retryable:
                    self._abort(target, path, uploads)
                raise
        return True

    def _multipart_copy(
        self,
        copy_source: dict[str, str],
        target: Location,
        path: str,
        entry: ManifestEntry,
        uploads: dict[str, Upload],
        beat: _Beat,
    ) -> None:
        """CreateMultipartUpload, UploadPartCopy per range (in parallel), Complete; resumes
        the upload `uploads` names (the parts S3 already has are not copied again)."""
        key = target.key(path)
        upload = uploads.get(path)
        if upload is not None:
            have = self._parts_done(target, key, upload.upload_id)
            if have is None:  # completed or aborted since the heartbeat
                upload = None
                with beat.lock:
                    del uploads[path]
                head = self._head(target, path)
                if head is not None and head["ContentLength"] == entry.size and (confirm(entry, head) or (False,))[0]:
                    return  # it was completed: the copy is there
            else:
                upload.parts = have
        # Uploads of this key nobody resumes (a run whose heartbeat was lost) would be billed
        # forever: abort them.
        self._abort_others(target, key, upload.upload_id if upload else None)
        algorithm = entry.full_object_algorithm
        checksum = algorithm or (entry.parts.algorithm if entry.parts else "SHA256")
        if upload is None:
            part_size = self._part_size(entry)
            extra = {"ChecksumType": "FULL_OBJECT"} if algorithm else {}
            reply = self._s3.create_multipart_upload(
                Bucket=target.bucket, Key=key, ChecksumAlgorithm=checksum, StorageClass="STANDARD", **extra
            )
            upload = Upload(upload_id=reply["UploadId"], part_size=part_size)
            with beat.lock:
                uploads[path] = upload
            beat()
        numbers = {p.number for p in upload.parts}
        ranges = [
            (n, start, min(start + upload.part_size, entry.size) - 1)
            for n, start in enumerate(range(0, entry.size, upload.part_size), start=1)
            if n not in numbers
        ]

        def copy_part(r: tuple[int, int, int]) -> CopiedPart:
            number, first, last = r
            reply = self._s3.upload_part_copy(
                Bucket=target.bucket,
                Key=key,
                UploadId=upload.upload_id,
                PartNumber=number,
                CopySource=copy_source,
                CopySourceRange=f"bytes={first}-{last}",
            )["CopyPartResult"]
            sums = {k: v for k, v in reply.items() if k.startswith("Checksum") and k != "ChecksumType"}
            return CopiedPart(number=number, etag=reply["ETag"], checksums=sums)

        def copied(_: Any, part: CopiedPart) -> None:
            with beat.lock:
                upload.parts.append(part)
            beat()

        _parallel(self._workers, ranges, copy_part, copied)
        complete: dict[str, Any] = {}
        if algorithm:
            # S3 checks the full-object checksum given here and refuses a copy that differs.
            complete = {"ChecksumType": "FULL_OBJECT", f"Checksum{algorithm}": entry.full_object(algorithm)}
        parts = [
            {"PartNumber": p.number, "ETag": p.etag, **p.checksums}
            for p in sorted(upload.parts, key=lambda p: p.number)
        ]
        self._s3.complete_multipart_upload(
            Bucket=target.bucket, Key=key, UploadId=upload.upload_id, MultipartUpload={"Parts": parts}, **complete
        )
        with beat.lock:
            uploads.pop(path, None)

    def _part_size(self, entry: ManifestEntry) -> int:
        if entry.parts is not None and entry.full_object_algorithm is None:
            return entry.parts.size
        return max(self._part_bytes, math.ceil(entry.size / MAX_PARTS))

    def _parts_done(self, target: Location, key: str, upload_id: str) -> list[CopiedPart] | None:
        """The parts S3 holds for the upload (more than the last heartbeat may say); None
        when the upload is gone."""
        parts: list[CopiedPart] = []
        try:
            pages = self._s3.get_paginator("list_parts").paginate(Bucket=target.bucket, Key=key, UploadId=upload_id)
            for page in pages:
                for p in page.get("Parts", []):
                    sums = {k: v for k, v in p.items() if k.startswith("Checksum") and k != "ChecksumType"}
                    parts.append(CopiedPart(number=p["PartNumber"], etag=p["ETag"], checksums=sums))
        except ClientError as exc:
            if _code(exc) == "NoSuchUpload":
                return None
            raise
        return parts

    def _abort_others(self, target: Location, key: str, keep: str | None) -> None:
        listed = self._s3.list_multipart_uploads(Bucket=target.bucket, Prefix=key)
        for upload in listed.get("Uploads", []):
            if upload["Key"] == key and upload["UploadId"] != keep:
                self._s3.abort_multipart_upload(Bucket=target.bucket, Key=key, UploadId=upload["UploadId"])

    def _abort(self, target: Location, path: str, uploads: dict[str, Upload]) -> None:
        upload = uploads.pop(path, None)
        if upload is None:
            return
        try:
            self._s3.abort_multipart_upload(Bucket=target.bucket, Key=target.key(path), UploadId=upload.upload_id)
        except (ClientError, BotoCoreError):
            # The next run's _abort_others finds it again.
            activity.logger.warning("could not abort upload %s of %s", upload.upload_id, target.uri(path))

    def _wait(self, seconds: float, beat: _Beat) -> None:
        """Sleep between polls of Glacier, heartbeating at least every 30 s: a Standard poll
        interval (5 min) is longer than the heartbeat timeout."""
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            activity.wait_for_cancelled_sync(min(left, 30.0))
            if activity.is_cancelled():
                raise CancelledError("restore cancelled while waiting for Glacier")
            beat()

    # ---------------------------------------------------------------- sync
    @activity.defn(name=ARTIFACTS_SYNC)
    def sync(self, input: SyncInput) -> SyncResult:
        model = _model(input.runbook, input.model, input.version)
        source = _region_location(input.runbook, model, input.source_region)
        target = _region_location(input.runbook, model, input.target_region)
        progress = _details(SyncProgress) or SyncProgress()
        beat = _Beat(progress)
        checked, manifest = self._verify(model, source, input.source_region, beat=beat)
        if manifest is None or not checked.ok:
            raise ApplicationError(
                f"cannot sync {model.name} {model.version} from {input.source_region}: its copy at "
                f"{source.uri()} has {_summary(checked)}: {_keys(checked)}. Fix: restore the source "
                f"region first ({ARTIFACTS_RESTORE}) or sync from another region.",
                type=ErrorType.SOURCE_NOT_HEALTHY,
                non_retryable=True,
            )
        listed = self._list(target)
        unchanged = 0
        for entry in manifest.files:
            # Files an earlier attempt copied are checked too (a HEAD): one broken since is
            # copied again rather than trusted from the heartbeat forever.
            if entry.path not in progress.uploads and self._check(target, entry, listed.get(entry.path))[0] is None:
                unchanged += entry.path not in progress.copied
                continue
            self._copy(source, target, entry.path, entry, progress.uploads, beat)
            with beat.lock:
                if entry.path not in progress.copied:
                    progress.copied.append(entry.path)
            beat()
        source_manifest = self._read(source, model.manifest)
        target_manifest = self._read(target, model.manifest) if model.manifest in listed else None
        if source_manifest != target_manifest:
            self._copy(source, target, model.manifest, None, progress.uploads, beat)
            if model.manifest not in progress.copied:
                progress.copied.append(model.manifest)
        elif model.manifest not in progress.copied:
            unchanged += 1
        after, _ = self._verify(model, target, input.target_region, beat=beat)
        if not after.ok:
            raise ApplicationError(
                f"synced {model.name} {model.version} to {target.uri()} but it still has "
                f"{_summary(after)}: {_keys(after)}; will retry",
                type=ErrorType.SYNC_INCOMPLETE,
            )
        return SyncResult(copied=[target.uri(p) for p in progress.copied], unchanged=unchanged, verify=after)


def _size(entries: dict[str, ManifestEntry], path: str) -> int:
    entry = entries.get(path)
    return entry.size if entry else 0


def _slowest(tiers: Iterable[str]) -> Tier:
    chosen = set(tiers)
    return next((t for t in _CHEAPEST_FIRST if t in chosen), "Expedited")


def _fastest_tier(size: int) -> Tier:
    return "Expedited" if size <= EXPEDITED_MAX_BYTES else "Standard"


def choose_tiers(budget_seconds: float, sizes: dict[str, int]) -> dict[str, Tier]:
    """Per object, the cheapest tier whose worst case fits the budget. Nothing is done before
    the slowest object's fastest tier is, so that is budget too (a 1 GB file needs Standard;
    the small files beside it need not pay for Expedited)."""
    floor = max((TIER_SECONDS[_fastest_tier(s)][1] for s in sizes.values()), default=0.0)
    allowed = max(budget_seconds, floor)
    chosen: dict[str, Tier] = {}
    for path, size in sizes.items():
        fits = [t for t in _CHEAPEST_FIRST if TIER_SECONDS[t][1] <= allowed]
        fits = [t for t in fits if t != "Expedited" or size <= EXPEDITED_MAX_BYTES]
        chosen[path] = fits[0] if fits else _fastest_tier(size)
    return chosen


def choose_tier(budget_seconds: float, sizes: list[int]) -> Tier:
    """The slowest tier `choose_tiers` picks for these sizes: when the restore is done."""
    tiers = choose_tiers(budget_seconds, {str(i): s for i, s in enumerate(sizes)})
    return _slowest(tiers.values()) if tiers else "Expedited"


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

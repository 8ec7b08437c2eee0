"""The artifacts activities (ARTIFACTS_VERIFY, ARTIFACTS_RESTORE, ARTIFACTS_SYNC), and what
`drpilot runbook plan` and `drpilot artifacts manifest` ask of the same code.

Each activity is idempotent and safe to retry; what each does is in verify.py, archive.py
and sync.py, on the stores of objects.py (S3: s3.py, Cloud Storage: gcs.py) and the copies
of copies.py.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Self

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.artifacts.archive import ArchiveRestore, FileRestore
from activities.artifacts.copies import COPY_OBJECT_MAX_BYTES, MIN_PART_BYTES, PART_BYTES, Copier
from activities.artifacts.describe import describe_prefix
from activities.artifacts.gcs import gcs_client
from activities.artifacts.manifest import Manifest
from activities.artifacts.objects import Location
from activities.artifacts.progress import WORKERS, Beat, resumed
from activities.artifacts.stores import build_stores
from activities.artifacts.streams import STREAM_PART_BYTES
from activities.artifacts.sync import sync
from activities.artifacts.verify import Verifier, VerifyProgress
from activities.contracts import (
    ARTIFACTS_RESTORE,
    ARTIFACTS_SYNC,
    ARTIFACTS_VERIFY,
    ArtifactInput,
    ErrorType,
    RestoreInput,
    RestoreResult,
    SyncInput,
    SyncResult,
    VerifyResult,
)
from activities.credentials import Rotating, aws_config
from drpilot.domain.runbook import Model, Runbook
from drpilot.domain.settings import Settings


class ArtifactActivities:
    def __init__(
        self,
        s3: Any,
        *,
        gcs: Callable[[], Any] = gcs_client,
        multipart_threshold: int = COPY_OBJECT_MAX_BYTES,
        part_bytes: int = PART_BYTES,
        stream_part_bytes: int = STREAM_PART_BYTES,
        workers: int = WORKERS,
    ):
        """`multipart_threshold`: objects larger than this are copied with UploadPartCopy
        (at most S3's 5 GiB CopyObject limit; tests lower it). `part_bytes`: the part size of
        such a copy when the manifest does not fix one. `stream_part_bytes`: the part / chunk
        size of a copy streamed between clouds (memory: parts in flight x this). `gcs` builds the Cloud Storage client,
        at the first gs:// location (an S3-only runbook never needs Google credentials)."""
        if not MIN_PART_BYTES <= part_bytes <= COPY_OBJECT_MAX_BYTES:
            raise ValueError(f"part_bytes must be within {MIN_PART_BYTES}..{COPY_OBJECT_MAX_BYTES}")
        self._s3 = s3
        self._workers = workers
        self._objects = build_stores(s3, gcs)
        self._verifier = Verifier(self._objects, workers)
        self._copier = Copier(
            self._objects,
            threshold=min(multipart_threshold, COPY_OBJECT_MAX_BYTES),
            part_bytes=part_bytes,
            stream_part_bytes=stream_part_bytes,
            workers=workers,
        )
        self._archive = ArchiveRestore(self._objects, self._verifier, self._copier)

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        import boto3

        # AWS_ENDPOINT_URL(_S3) and credentials come from the environment, as boto3 reads them.
        # An UploadPartCopy answers when S3 has copied the part (PART_BYTES at the least
        # speed S3 is sure to manage, calls.TRANSFER_BYTES_PER_SECOND): well inside 60 s.
        config = aws_config(
            read_timeout=60,
            attempts=4,
            max_pool_connections=WORKERS + 2,  # one per parallel file / part, and spare
        )
        # Rebuilt when the shared credentials / config files change (a rotated key), from a
        # new session: boto3's default session would keep the credentials it read first.
        return cls(
            Rotating(lambda: boto3.session.Session().client("s3", config=config)),
            gcs=lambda: gcs_client(settings),
        )

    def all(self) -> list[Callable]:
        return [self.verify, self.restore_from_archive, self.sync]

    @activity.defn(name=ARTIFACTS_VERIFY)
    def verify(self, input: ArtifactInput) -> VerifyResult:
        model = _model(input.runbook, input.model, input.version)
        where = _region_location(input.runbook, model, input.region)
        progress = resumed(VerifyProgress) or VerifyProgress()
        result, _ = self._verifier.verify(model, where, input.region, progress=progress, beat=Beat(progress))
        return result

    @activity.defn(name=ARTIFACTS_RESTORE)
    def restore_from_archive(self, input: RestoreInput) -> RestoreResult:
        model = _model(input.runbook, input.model, input.version)
        return self._archive.restore(model, _region_location(input.runbook, model, input.region), input)

    @activity.defn(name=ARTIFACTS_SYNC)
    def sync(self, input: SyncInput) -> SyncResult:
        model = _model(input.runbook, input.model, input.version)
        source = _region_location(input.runbook, model, input.source_region)
        target = _region_location(input.runbook, model, input.target_region)
        return sync(self._objects, self._verifier, self._copier, model, source, target, input)

    def restore_plan(self, input: RestoreInput) -> list[FileRestore]:
        """What restore_from_archive would request now, file by file, with Glacier's time for
        each (for `drpilot runbook plan`); changes nothing."""
        model = _model(input.runbook, input.model, input.version)
        return self._archive.plan(model, _region_location(input.runbook, model, input.region), input)

    def manifest_of(self, where: Location, name: str) -> tuple[Manifest, int]:
        """The manifest an existing prefix deserves, from what its store knows of each object,
        and how many bodies had to be read for it (objects the store keeps no checksum of)."""
        return describe_prefix(self._objects, self._workers, where, name)

    def put_manifest(self, where: Location, name: str, body: bytes) -> None:
        self._objects.put_json(where, name, body)


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


"""Copy a model's files between prefixes, asking the store for the checksum the manifest records.

A copy so made confirms against the manifest without a read. Inside S3 it is CopyObject /
UploadPartCopy (below); inside Cloud Storage a server-side rewrite (rewrites.py); between
the two a streamed copy (streams.py). Objects above the multipart
threshold (CopyObject takes at most 5 GiB) are copied part by part with UploadPartCopy,
parts in parallel; an upload in flight is in the caller's heartbeat (`Upload`), and a
retried attempt resumes it instead of starting over. Uploads nobody will resume are aborted:
S3 would bill their parts forever.
"""

from __future__ import annotations

import math
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.artifacts.copies_state import CopiedPart, Upload
from activities.artifacts.manifest import ManifestEntry, confirm
from activities.artifacts.objects import Location, Stores
from activities.artifacts.progress import Beat, parallel
from activities.artifacts.rewrites import rewrite
from activities.artifacts.s3_errors import error_code, s3_errors
from activities.artifacts.streams import Streamer

# CopyObject takes at most 5 GiB (S3 API reference, CopyObject); above that, UploadPartCopy.
COPY_OBJECT_MAX_BYTES = 5 * 1024**3
# Multipart limits (S3 user guide, "Amazon S3 multipart upload limits").
MIN_PART_BYTES = 5 * 1024**2
MAX_PARTS = 10_000
PART_BYTES = 256 * 1024**2  # copy part size when the manifest does not fix the layout





class Copier:
    def __init__(self, objects: Stores, *, threshold: int, part_bytes: int, stream_part_bytes: int, workers: int):
        """`threshold`: objects larger than this are copied with UploadPartCopy. `part_bytes`:
        the part size of such a copy when the manifest does not fix one."""
        self.objects = objects
        self.threshold = threshold
        self.part_bytes = part_bytes
        self.workers = workers
        self.streamer = Streamer(objects, self, workers=workers, part_bytes=stream_part_bytes)

    @property
    def s3(self):
        return self.objects.store("s3").s3

    def copy(
        self,
        source: Location,
        target: Location,
        path: str,
        entry: ManifestEntry | None,
        uploads: dict[str, Upload],
        beat: Beat,
    ) -> bool:
        """Copy one file asking the store for the checksum the manifest records; False when
        the source is (again) only in Glacier, or gone."""
        if source.scheme != target.scheme:
            return self.streamer.copy(source, target, path, entry, uploads, beat)
        if target.scheme == "gs":
            return rewrite(self.objects.store("gs"), source, target, path, uploads, beat)
        doing = f"copying {source.uri(path)} to {target.uri(path)}"
        copy_source = {"Bucket": source.bucket, "Key": source.key(path)}
        size = entry.size if entry else 0
        algorithm = entry.full_object_algorithm if entry else None
        parts = entry.parts if entry else None
        # A composite checksum follows from the part layout: a copy with the same layout
        # confirms against the manifest's parts without a read, in S3 and the twin alike.
        keep_layout = parts is not None and algorithm is None
        with s3_errors(target.bucket, doing, "s3:GetObject on the source and s3:PutObject"):
            try:
                if size > self.threshold or keep_layout:
                    self._multipart_copy(copy_source, target, path, entry, uploads, beat)
                else:
                    # Objects restored from Glacier are copied as STANDARD.
                    self.s3.copy_object(
                        Bucket=target.bucket,
                        Key=target.key(path),
                        CopySource=copy_source,
                        ChecksumAlgorithm=algorithm or "SHA256",
                        StorageClass="STANDARD",
                    )
            except ClientError as exc:
                if error_code(exc) in ("ObjectNotInActiveTierError", "InvalidObjectState"):
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
        beat: Beat,
    ) -> None:
        """CreateMultipartUpload, UploadPartCopy per range (in parallel), Complete; resumes
        the upload `uploads` names (the parts S3 already has are not copied again)."""
        key = target.key(path)
        upload = uploads.get(path)
        if upload is not None:
            have = self.parts_done(target, key, upload.upload_id)
            if have is None:  # completed or aborted since the heartbeat
                upload = None
                with beat.lock:
                    del uploads[path]
                head = self.objects.head(target, path)
                if head is not None and head["ContentLength"] == entry.size and (confirm(entry, head) or (False,))[0]:
                    return  # it was completed: the copy is there
            else:
                upload.parts = have
        # Uploads of this key nobody resumes (a run whose heartbeat was lost) would be billed
        # forever: abort them.
        self.abort_others(target, key, upload.upload_id if upload else None)
        algorithm = entry.full_object_algorithm
        checksum = algorithm or (entry.parts.algorithm if entry.parts else "SHA256")
        if upload is None:
            part_size = self._part_size(entry)
            extra = {"ChecksumType": "FULL_OBJECT"} if algorithm else {}
            reply = self.s3.create_multipart_upload(
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
            reply = self.s3.upload_part_copy(
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

        parallel(self.workers, ranges, copy_part, copied)
        complete: dict[str, Any] = {}
        if algorithm:
            # S3 checks the full-object checksum given here and refuses a copy that differs.
            complete = {"ChecksumType": "FULL_OBJECT", f"Checksum{algorithm}": entry.full_object(algorithm)}
        parts = [
            {"PartNumber": p.number, "ETag": p.etag, **p.checksums}
            for p in sorted(upload.parts, key=lambda p: p.number)
        ]
        self.s3.complete_multipart_upload(
            Bucket=target.bucket, Key=key, UploadId=upload.upload_id, MultipartUpload={"Parts": parts}, **complete
        )
        with beat.lock:
            uploads.pop(path, None)

    def _part_size(self, entry: ManifestEntry) -> int:
        if entry.parts is not None and entry.full_object_algorithm is None:
            return entry.parts.size
        return max(self.part_bytes, math.ceil(entry.size / MAX_PARTS))

    def parts_done(self, target: Location, key: str, upload_id: str) -> list[CopiedPart] | None:
        """The parts S3 holds for the upload (more than the last heartbeat may say); None
        when the upload is gone."""
        parts: list[CopiedPart] = []
        try:
            pages = self.s3.get_paginator("list_parts").paginate(Bucket=target.bucket, Key=key, UploadId=upload_id)
            for page in pages:
                for p in page.get("Parts", []):
                    sums = {k: v for k, v in p.items() if k.startswith("Checksum") and k != "ChecksumType"}
                    parts.append(CopiedPart(number=p["PartNumber"], etag=p["ETag"], checksums=sums))
        except ClientError as exc:
            if error_code(exc) == "NoSuchUpload":
                return None
            raise
        return parts

    def abort_others(self, target: Location, key: str, keep: str | None) -> None:
        listed = self.s3.list_multipart_uploads(Bucket=target.bucket, Prefix=key)
        for upload in listed.get("Uploads", []):
            if upload["Key"] == key and upload["UploadId"] != keep:
                self.s3.abort_multipart_upload(Bucket=target.bucket, Key=key, UploadId=upload["UploadId"])

    def _abort(self, target: Location, path: str, uploads: dict[str, Upload]) -> None:
        upload = uploads.pop(path, None)
        if upload is None:
            return
        try:
            self.s3.abort_multipart_upload(Bucket=target.bucket, Key=target.key(path), UploadId=upload.upload_id)
        except (ClientError, BotoCoreError):
            # The next run's abort_others finds it again.
            activity.logger.warning("could not abort upload %s of %s", upload.upload_id, target.uri(path))

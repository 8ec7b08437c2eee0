"""Copy a file between clouds (Cloud Storage -> S3, S3 -> Cloud Storage), streamed.

No store copies from the other server-side, so the bytes pass through the worker: read in
ranges and written as they come, never the whole file in memory. Into S3 it is a multipart
upload of parts read from Cloud Storage, `workers` parts in flight (memory: parts in flight
x part size), each part's checksum computed here and the full-object checksum the manifest
records handed to S3 to check; the upload is in the heartbeat (`Upload`), so a retry
uploads only the parts S3 lacks. Into Cloud Storage it is a resumable upload session, one
chunk in memory at a time, with the manifest's CRC32C for Cloud Storage to check; the
session's URL is in the heartbeat, so a retry asks it how far it got and sends the rest.
"""

from __future__ import annotations

import base64
import math
import zlib
from typing import TYPE_CHECKING

import google_crc32c

from activities.artifacts.copies_state import CopiedPart, Upload
from activities.artifacts.gcs_errors import gcs_errors
from activities.artifacts.manifest import ManifestEntry
from activities.artifacts.objects import Location, Stores
from activities.artifacts.progress import Beat, parallel
from activities.artifacts.s3_errors import s3_errors

if TYPE_CHECKING:
    from activities.artifacts.copies import Copier

STREAM_PART_BYTES = 16 * 1024**2  # part / chunk size of a streamed copy
# A resumable upload's chunks are multiples of 256 KiB, all but the last (Cloud Storage docs,
# "Perform resumable uploads", "Upload in multiple chunks").
_SESSION_CHUNK = 256 * 1024
MAX_PARTS = 10_000  # S3 multipart limit
# Computed here for each part (botocore computes CRC32C only with awscrt installed).
_PART_CHECKSUMS = {
    "CRC32C": lambda body: google_crc32c.Checksum(body).digest(),
    "CRC32": lambda body: zlib.crc32(body).to_bytes(4, "big"),
}


class Streamer:
    def __init__(self, objects: Stores, copier: Copier, *, workers: int, part_bytes: int = STREAM_PART_BYTES):
        self.objects = objects
        self.copier = copier
        self.workers = workers
        self.part_bytes = part_bytes

    def copy(
        self, source: Location, target: Location, path: str, entry: ManifestEntry | None,
        uploads: dict[str, Upload], beat: Beat,
    ) -> bool:
        """False when the source does not exist."""
        head = self.objects.head(source, path)
        if head is None:
            return False
        size = int(head["ContentLength"])
        if target.scheme == "s3":
            self._to_s3(source, target, path, size, entry, uploads, beat)
        else:
            self._to_gcs(source, target, path, size, entry, uploads, beat)
        return True

    def _read(self, source: Location, path: str, first: int, end: int) -> bytes:
        return b"".join(self.objects.chunks(source, path, first, end))

    def _to_s3(
        self, source: Location, target: Location, path: str, size: int, entry: ManifestEntry | None,
        uploads: dict[str, Upload], beat: Beat,
    ) -> None:
        s3, key = self.copier.s3, target.key(path)
        algorithm = next((a for a in _PART_CHECKSUMS if entry is not None and entry.full_object(a)), None)
        doing = f"streaming {source.uri(path)} to {target.uri(path)}"
        part_size = max(self.part_bytes, math.ceil(size / MAX_PARTS))
        with s3_errors(target.bucket, doing, "s3:PutObject"):
            if size <= part_size and path not in uploads:
                body = self._read(source, path, 0, size)
                sent = {"ChecksumAlgorithm": algorithm or "SHA256"}
                if algorithm:  # given, so botocore need not compute it (CRC32C needs awscrt there)
                    sent[f"Checksum{algorithm}"] = _checksum(algorithm, body)
                s3.put_object(Bucket=target.bucket, Key=key, Body=body, **sent)
                beat()
                return
            upload = uploads.get(path)
            if upload is not None and upload.upload_id:
                have = self.copier.parts_done(target, key, upload.upload_id)
                upload = upload.model_copy(update={"parts": have}) if have is not None else None
            self.copier.abort_others(target, key, upload.upload_id if upload else None)
            if upload is None:
                kind = {"ChecksumType": "FULL_OBJECT"} if algorithm else {}
                reply = s3.create_multipart_upload(
                    Bucket=target.bucket, Key=key, ChecksumAlgorithm=algorithm or "SHA256", **kind
                )
                upload = Upload(upload_id=reply["UploadId"], part_size=part_size)
            with beat.lock:
                uploads[path] = upload
            beat()
            done = {p.number for p in upload.parts}
            ranges = [
                (n, first, min(first + upload.part_size, size))
                for n, first in enumerate(range(0, size, upload.part_size), start=1)
                if n not in done
            ]

            def send(r: tuple[int, int, int]) -> CopiedPart:
                number, first, end = r
                body = self._read(source, path, first, end)
                sums = {f"Checksum{algorithm}": _checksum(algorithm, body)} if algorithm else {}
                extra = sums or {"ChecksumAlgorithm": "SHA256"}
                reply = s3.upload_part(
                    Bucket=target.bucket, Key=key, UploadId=upload.upload_id, PartNumber=number, Body=body, **extra
                )
                sums = sums or {"ChecksumSHA256": reply["ChecksumSHA256"]}
                return CopiedPart(number=number, etag=reply["ETag"], checksums=sums)

            def sent(_: object, part: CopiedPart) -> None:
                with beat.lock:
                    upload.parts.append(part)
                beat()

            parallel(self.workers, ranges, send, sent)
            complete = {}
            if algorithm and entry is not None:
                # S3 checks the full-object checksum given here and refuses a copy that differs.
                complete = {"ChecksumType": "FULL_OBJECT", f"Checksum{algorithm}": entry.full_object(algorithm)}
            parts = [{"PartNumber": p.number, "ETag": p.etag, **p.checksums} for p in sorted(upload.parts, key=lambda p: p.number)]
            s3.complete_multipart_upload(
                Bucket=target.bucket, Key=key, UploadId=upload.upload_id, MultipartUpload={"Parts": parts}, **complete
            )
            with beat.lock:
                uploads.pop(path, None)
            beat()

    def _to_gcs(
        self, source: Location, target: Location, path: str, size: int, entry: ManifestEntry | None,
        uploads: dict[str, Upload], beat: Beat,
    ) -> None:
        """A resumable upload session, its URL and the bytes Cloud Storage has in the
        heartbeat: a retry asks the session how far it got and sends only the rest."""
        gcs = self.objects.store("gs")
        doing = f"streaming {source.uri(path)} to {target.uri(path)}"
        with gcs_errors(target.bucket, doing, "storage.objects.create"):
            if size == 0:  # a session needs at least one chunk; an empty file has none
                gcs.blob(target, path).upload_from_string(b"", checksum="crc32c")
                return
            upload = uploads.get(path)
            offset = gcs.session_offset(upload.session_url, size) if upload is not None and upload.session_url else None
            if offset is None:
                # Cloud Storage checks the CRC32C given here against the object it received.
                session = gcs.open_session(target, path, size, entry.crc32c if entry is not None else None)
                upload, offset = Upload(session_url=session, size=size), 0
                self._beat_upload(uploads, path, upload, beat)
            chunk = max(_SESSION_CHUNK, self.part_bytes // _SESSION_CHUNK * _SESSION_CHUNK)
            while offset < size:
                body = self._read(source, path, offset, min(offset + chunk, size))
                # The session says how much it kept: usually all, else the next read starts there.
                offset = gcs.send_chunk(upload.session_url, body, offset, size)
                upload = upload.model_copy(update={"bytes_done": offset})
                self._beat_upload(uploads, path, upload, beat)
        with beat.lock:
            uploads.pop(path, None)
        beat()

    @staticmethod
    def _beat_upload(uploads: dict[str, Upload], path: str, upload: Upload, beat: Beat) -> None:
        with beat.lock:
            uploads[path] = upload
        beat()


def _checksum(algorithm: str, body: bytes) -> str:
    return base64.b64encode(_PART_CHECKSUMS[algorithm](body)).decode()

"""The S3 implementation of `ObjectStore`: a model version's objects through boto3.

Lists, reads, HEADs (with the stored checksum), hashes and writes, each call through
`s3_errors`; a file is confirmed by S3's full-object or composite checksum or its ETag
(manifest.py), and described from HEAD and GetObjectAttributes.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from botocore.exceptions import ClientError

from activities.artifacts.manifest import ManifestEntry, confirm, entry_from_s3, stored_checksums
from activities.artifacts.objects import CHUNK_BYTES, Location, ObjectStore
from activities.artifacts.s3_errors import error_code, http_status, s3_errors


class S3Objects(ObjectStore):
    def __init__(self, s3: Any):
        self.s3 = s3

    def listed(self, where: Location) -> dict[str, dict[str, Any]]:
        listed: dict[str, dict[str, Any]] = {}
        with s3_errors(where.bucket, f"listing {where.uri()}", "s3:ListBucket"):
            pages = self.s3.get_paginator("list_objects_v2").paginate(
                Bucket=where.bucket, Prefix=where.prefix
            )
            for page in pages:
                for obj in page.get("Contents", []):
                    listed[obj["Key"][len(where.prefix) :]] = obj
        return listed

    def read(self, where: Location, path: str) -> bytes:
        with s3_errors(where.bucket, f"reading {where.uri(path)}", "s3:GetObject"):
            return self.s3.get_object(Bucket=where.bucket, Key=where.key(path))["Body"].read()

    def head(self, where: Location, path: str) -> dict[str, Any] | None:
        """HEAD with the stored checksum; None when the object does not exist."""
        with s3_errors(where.bucket, f"reading {where.uri(path)}", "s3:GetObject"):
            try:
                return self.s3.head_object(
                    Bucket=where.bucket, Key=where.key(path), ChecksumMode="ENABLED"
                )
            except ClientError as exc:
                # HEAD has no body, so a missing key is a bare 404 (no NoSuchKey code).
                if http_status(exc) == 404 and error_code(exc) in ("404", "NoSuchKey", "NotFound"):
                    return None
                raise

    def chunks(self, where: Location, path: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        ranged = {} if start == 0 and end is None else {"Range": f"bytes={start}-{'' if end is None else end - 1}"}
        with s3_errors(where.bucket, f"reading {where.uri(path)}", "s3:GetObject"):
            body = self.s3.get_object(Bucket=where.bucket, Key=where.key(path), **ranged)["Body"]
            yield from body.iter_chunks(CHUNK_BYTES)

    def put_json(self, where: Location, name: str, body: bytes) -> None:
        with s3_errors(where.bucket, f"writing {where.uri(name)}", "s3:PutObject"):
            self.s3.put_object(
                Bucket=where.bucket, Key=where.key(name), Body=body, ChecksumAlgorithm="SHA256",
                ContentType="application/json",
            )

    def confirm(self, where: Location, entry: ManifestEntry, head: dict[str, Any]) -> tuple[bool, str] | None:
        return confirm(entry, head)

    def describe(self, where: Location, path: str, head: dict[str, Any]) -> tuple[ManifestEntry, bool]:
        parts = None
        if "-" in str(head.get("ETag", "")) and stored_checksums(head):
            # A multipart upload: whether its checksum is FULL_OBJECT or COMPOSITE, and
            # the parts, come from GetObjectAttributes (moto's HEAD leaves out the
            # x-amz-checksum-type and "-N" that S3's HEAD reports).
            kind, parts = self.object_parts(where, path)
            head = {**head, "ChecksumType": kind or head.get("ChecksumType")}
        return entry_from_s3(path, head, parts)

    def object_parts(self, where: Location, path: str) -> tuple[str | None, list[dict[str, Any]] | None]:
        """(ChecksumType, each part's size and checksum) from GetObjectAttributes; parts
        None when S3 does not return them."""
        parts: list[dict[str, Any]] = []
        marker, kind = 0, None
        with s3_errors(where.bucket, f"reading the parts of {where.uri(path)}", "s3:GetObjectAttributes"):
            while True:
                reply = self.s3.get_object_attributes(
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

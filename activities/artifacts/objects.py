"""A model version's objects in S3: where they are, and the reads and writes every job shares.

A `Location` is one model version's prefix in one bucket (a region's copy or the archive);
`S3Objects` lists, reads, HEADs (with the stored checksum), hashes and writes its objects,
each call through `s3_errors`.
"""

from __future__ import annotations

import base64
import hashlib
import zlib
from dataclasses import dataclass
from typing import Any, Literal

from botocore.exceptions import ClientError

from activities.artifacts.progress import Beat
from activities.artifacts.s3_errors import error_code, http_status, s3_errors

CHUNK_BYTES = 8 * 1024**2  # read size when hashing; one heartbeat per chunk
ARCHIVED_CLASSES = {"GLACIER", "DEEP_ARCHIVE"}


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


def restore_state(head: dict[str, Any]) -> Literal["readable", "ongoing", "archived"]:
    if head.get("StorageClass") not in ARCHIVED_CLASSES:
        return "readable"
    restore = head.get("Restore") or ""
    if 'ongoing-request="true"' in restore:
        return "ongoing"
    if 'ongoing-request="false"' in restore:
        return "readable"
    return "archived"


class S3Objects:
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

    def hash(self, where: Location, path: str, beat: Beat) -> tuple[str, str]:
        """(sha256 hex, crc32 base64) of the body, read in chunks, one heartbeat per chunk."""
        digest, crc = hashlib.sha256(), 0
        with s3_errors(where.bucket, f"reading {where.uri(path)}", "s3:GetObject"):
            body = self.s3.get_object(Bucket=where.bucket, Key=where.key(path))["Body"]
            for chunk in body.iter_chunks(CHUNK_BYTES):
                digest.update(chunk)
                crc = zlib.crc32(chunk, crc)
                beat()
        return digest.hexdigest(), base64.b64encode(crc.to_bytes(4, "big")).decode()

    def put_json(self, where: Location, name: str, body: bytes) -> None:
        with s3_errors(where.bucket, f"writing {where.uri(name)}", "s3:PutObject"):
            self.s3.put_object(
                Bucket=where.bucket, Key=where.key(name), Body=body, ChecksumAlgorithm="SHA256",
                ContentType="application/json",
            )

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

    def state_of(self, archive: Location, path: str) -> str | None:
        """readable / ongoing / archived for the archive's copy; None when it has none."""
        head = self.head(archive, path)
        return None if head is None else restore_state(head)

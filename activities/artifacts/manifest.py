"""The checksum manifest of a model version, and how S3's own metadata confirms a file.

`{"model", "version", "files": [entry...]}` under each prefix, one format for S3 and Cloud
Storage (gcs.py confirms against it with what Cloud Storage stores). An entry has its `path`
and `size`, and any of:

* `crc64nvme` / `crc32c` / `crc32`: the full-object checksum, base64 as S3 reports it. S3
  keeps one for every object uploaded with that algorithm as a FULL_OBJECT checksum, single
  PUT or multipart, whatever the part size, so a HEAD confirms the file without a read.
* `parts`: `{size, algorithm, checksums}`, the part size and per-part checksums of a
  multipart upload whose checksum is COMPOSITE (SHA256, SHA1, CRC32, CRC32C). S3 reports
  the checksum of the part checksums, which follows from these.
* `etag`: the ETag S3 gave the upload; confirms a file that has no checksum at all, until
  it is copied (a copy gets a new ETag).
* `md5`: base64 of the body's MD5, as Cloud Storage reports it (`md5Hash`) for every object
  that is not composite; with `crc32c` (which Cloud Storage keeps for every object, composite
  ones too, in the same base64 big-endian form as S3) it confirms a file there without a read.
* `sha256`: hex of the whole body; S3 reports it for a single-part SHA256 upload, and it is
  what a deep check (or a file S3 can say nothing about) hashes the body against.
"""

from __future__ import annotations

import base64
import hashlib
import zlib
from typing import Any, Literal

from pydantic import BaseModel, Field

# The order a file is confirmed in when S3 holds several: strongest first.
ALGORITHMS = ("CRC64NVME", "CRC32C", "CRC32", "SHA256", "SHA1")
FULL_OBJECT_ALGORITHMS = ("CRC64NVME", "CRC32C", "CRC32")
Algorithm = Literal["CRC64NVME", "CRC32C", "CRC32", "SHA256", "SHA1"]
_DIGESTS = {"SHA256": hashlib.sha256, "SHA1": hashlib.sha1}


class Parts(BaseModel):
    """The layout of a multipart upload: every part but the last is `size` bytes."""

    size: int = Field(gt=0)
    algorithm: Algorithm
    checksums: list[str] = Field(min_length=1)  # base64, part 1 first

    def composite(self) -> str:
        """The checksum of the checksums, as S3 computes a COMPOSITE checksum (without -N)."""
        joined = b"".join(base64.b64decode(c) for c in self.checksums)
        return base64.b64encode(_checksum(self.algorithm, joined)).decode()


class ManifestEntry(BaseModel):
    path: str
    size: int = Field(ge=0)
    sha256: str | None = None
    crc64nvme: str | None = None
    crc32c: str | None = None
    crc32: str | None = None
    md5: str | None = None
    parts: Parts | None = None
    etag: str | None = None

    def full_object(self, algorithm: str) -> str | None:
        """What S3 reports as this file's full-object checksum in `algorithm`, if known."""
        if algorithm == "SHA256":
            return base64.b64encode(bytes.fromhex(self.sha256)).decode() if self.sha256 else None
        return getattr(self, algorithm.lower(), None) if algorithm in FULL_OBJECT_ALGORITHMS else None

    @property
    def full_object_algorithm(self) -> str | None:
        """The CRC a copy should ask S3 for so that it confirms the copy without a read."""
        return next((a for a in FULL_OBJECT_ALGORITHMS if self.full_object(a)), None)


class Manifest(BaseModel):
    model: str | None = None
    version: str | None = None
    files: list[ManifestEntry]

    @property
    def bytes(self) -> int:
        return sum(f.size for f in self.files)


def _checksum(algorithm: str, data: bytes) -> bytes:
    if algorithm == "CRC32":
        return zlib.crc32(data).to_bytes(4, "big")
    if algorithm in _DIGESTS:
        return _DIGESTS[algorithm](data).digest()
    # CRC32C / CRC64NVME need awscrt; a manifest records S3's values instead of computing them.
    raise ValueError(f"cannot compute {algorithm} here; record the value S3 reports")


def part_checksums(body: bytes, part_size: int, algorithm: str) -> list[str]:
    """The per-part checksums S3 computes for `body` uploaded in parts of `part_size`."""
    return [
        base64.b64encode(_checksum(algorithm, body[i : i + part_size])).decode()
        for i in range(0, max(len(body), 1), part_size)
    ]


def stored_checksums(head: dict[str, Any]) -> dict[str, str]:
    """Algorithm -> value of what HEAD (ChecksumMode=ENABLED) returned; "v-N" for COMPOSITE."""
    return {a: str(head[f"Checksum{a}"]) for a in ALGORITHMS if head.get(f"Checksum{a}")}


def _multipart(head: dict[str, Any]) -> bool:
    return "-" in str(head.get("ETag", ""))


def _shown(algorithm: str, value: str) -> str:
    if algorithm == "SHA256" and "-" not in value:
        return base64.b64decode(value).hex()  # the manifest's sha256 is hex
    return value


def confirm(entry: ManifestEntry, head: dict[str, Any]) -> tuple[bool, str] | None:
    """(True, how) when S3's checksum or ETag matches the manifest, (False, why) when it
    contradicts it, None when S3 holds nothing the manifest records (only a read can tell)."""
    for algorithm, stored in stored_checksums(head).items():
        value, _, count = stored.partition("-")
        # A COMPOSITE checksum is never a full-object one, whatever its value looks like; and
        # only a multipart upload (ETag "...-N") has one (moto keeps a copied object's old
        # ChecksumType when CopyObject recomputes its checksum in full).
        composite_kind = bool(count) or (head.get("ChecksumType") == "COMPOSITE" and _multipart(head))
        full = None if composite_kind else entry.full_object(algorithm)
        parts = entry.parts if entry.parts and entry.parts.algorithm == algorithm else None
        # HEAD reports a COMPOSITE checksum as "value-N" (S3 user guide, "Checking object
        # integrity", multipart uploads); N must be the manifest's part count too.
        composite = parts.composite() if parts and (not count or int(count) == len(parts.checksums)) else None
        wanted = [v for v in (full, composite) if v]
        if value in wanted:
            return True, algorithm
        if full:
            return False, f"{algorithm.lower()} {_shown(algorithm, stored)}, manifest says {_shown(algorithm, full)}"
        if parts is not None:
            expected = f"{parts.composite()}-{len(parts.checksums)}"
            return False, f"{algorithm.lower()} {stored} (composite), manifest's parts give {expected}"
    etag = str(head.get("ETag", ""))
    if entry.etag and etag.strip('"') == entry.etag.strip('"'):
        return True, "ETag"
    return None


def entry_from_s3(path: str, head: dict[str, Any], parts: list[dict[str, Any]] | None) -> tuple[ManifestEntry, bool]:
    """The entry S3's metadata alone gives (HEAD with checksums, and the parts of a
    COMPOSITE multipart object from GetObjectAttributes), and whether it holds a checksum."""
    size = int(head["ContentLength"])
    fields: dict[str, Any] = {"path": path, "size": size, "etag": str(head.get("ETag", "")).strip('"') or None}
    found = False
    for algorithm, stored in stored_checksums(head).items():
        value, _, count = stored.partition("-")
        composite = count or (head.get("ChecksumType") == "COMPOSITE" and _multipart(head))
        if not composite:
            if algorithm == "SHA256":
                fields["sha256"] = base64.b64decode(value).hex()
            elif algorithm in FULL_OBJECT_ALGORITHMS:
                fields[algorithm.lower()] = value
            found = True
        elif parts:
            sums = [p.get(f"Checksum{algorithm}") for p in parts]
            if all(sums):
                fields["parts"] = Parts(size=int(parts[0]["Size"]), algorithm=algorithm, checksums=sums)
                found = True
    return ManifestEntry(**fields), found

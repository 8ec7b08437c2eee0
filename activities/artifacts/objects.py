"""A model version's objects in an object store: where they are, and what every store does.

A `Location` is one model version's prefix in one bucket (a region's copy or the archive),
in S3 (`s3://`) or Cloud Storage (`gs://`). `ObjectStore` is what verify, describe, restore
and sync ask of a store; `S3Objects` (s3.py) and `GcsObjects` (gcs.py) implement it, and
`Stores` hands each call to the store of the location it names, so verify, describe and sync
never look at a scheme (copies.py picks a copy by the pair of stores; archive.py knows that
only Glacier delays a read).
"""

from __future__ import annotations

import base64
import hashlib
import zlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

import google_crc32c

from activities.artifacts.manifest import ManifestEntry
from activities.artifacts.progress import Beat

CHUNK_BYTES = 8 * 1024**2  # read size when hashing; one heartbeat per chunk
# S3 classes whose objects must be restored before a read. Cloud Storage's Archive and
# Coldline classes are read at once (retrieval is billed, not delayed), so none of its are.
ARCHIVED_CLASSES = {"GLACIER", "DEEP_ARCHIVE"}
SCHEMES = {"s3": "S3", "gs": "Cloud Storage"}


@dataclass(frozen=True)
class Location:
    """One model version's prefix in one bucket (a region's copy or the archive)."""

    bucket: str
    prefix: str  # ends with "/" (or is empty)
    scheme: Literal["s3", "gs"] = "s3"

    @classmethod
    def parse(cls, uri: str) -> Location:
        """s3://bucket/prefix/ or gs://bucket/prefix/ (the runbook validated the form)."""
        scheme, sep, rest = uri.partition("://")
        if not sep or scheme not in SCHEMES:
            raise ValueError(f"{uri!r} is not an s3:// or gs:// URI")
        bucket, _, prefix = rest.partition("/")
        if prefix and not prefix.endswith("/"):
            prefix += "/"
        return cls(bucket, prefix, scheme)  # type: ignore[arg-type]

    def key(self, path: str) -> str:
        return self.prefix + path

    def uri(self, path: str = "") -> str:
        return f"{self.scheme}://{self.bucket}/{self.prefix}{path}"

    @property
    def store(self) -> str:
        """The store's name for messages: S3 or Cloud Storage."""
        return SCHEMES[self.scheme]


def restore_state(head: dict[str, Any]) -> Literal["readable", "ongoing", "archived"]:
    if head.get("StorageClass") not in ARCHIVED_CLASSES:
        return "readable"
    restore = head.get("Restore") or ""
    if 'ongoing-request="true"' in restore:
        return "ongoing"
    if 'ongoing-request="false"' in restore:
        return "readable"
    return "archived"


# A body's digest as a manifest records it: sha256 hex; the CRCs (big-endian) and md5 base64,
# as the stores report them.
_DIGESTS: dict[str, Callable[[], Any]] = {
    "sha256": hashlib.sha256,
    "md5": hashlib.md5,
    "crc32c": google_crc32c.Checksum,
}


def digest_chunks(chunks: Iterator[bytes], beat: Beat, algorithm: str = "sha256") -> str:
    """`algorithm`'s digest of the body (sha256, crc32c, md5 or crc32), one heartbeat per chunk."""
    if algorithm == "crc32":
        crc = 0
        for chunk in chunks:
            crc = zlib.crc32(chunk, crc)
            beat()
        return base64.b64encode(crc.to_bytes(4, "big")).decode()
    digest = _DIGESTS[algorithm]()
    for chunk in chunks:
        digest.update(chunk)
        beat()
    return digest.hexdigest() if algorithm == "sha256" else base64.b64encode(digest.digest()).decode()


class ObjectStore(ABC):
    """What verify, describe, restore and sync ask of one object store.

    `listed` gives, per path under the prefix, at least Size, StorageClass and LastModified;
    `head` at least ContentLength and StorageClass, plus the store's own checksums, which
    only the store itself interprets (`confirm`, `describe`).
    """

    @abstractmethod
    def listed(self, where: Location) -> dict[str, dict[str, Any]]: ...

    @abstractmethod
    def read(self, where: Location, path: str) -> bytes: ...

    @abstractmethod
    def head(self, where: Location, path: str) -> dict[str, Any] | None:
        """The object's metadata with its stored checksums; None when it does not exist."""

    @abstractmethod
    def chunks(self, where: Location, path: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """The body from `start` to `end` (exclusive; None: to the end), CHUNK_BYTES at a time."""

    @abstractmethod
    def put_json(self, where: Location, name: str, body: bytes) -> None: ...

    @abstractmethod
    def confirm(self, where: Location, entry: ManifestEntry, head: dict[str, Any]) -> tuple[bool, str] | None:
        """(True, how) when the stored checksum matches the manifest, (False, why) when it
        contradicts it, None when the store holds nothing the manifest records."""

    @abstractmethod
    def describe(self, where: Location, path: str, head: dict[str, Any]) -> tuple[ManifestEntry, bool]:
        """The manifest entry the store's metadata gives, and whether it holds a checksum."""

    def hash(self, where: Location, path: str, beat: Beat, algorithm: str = "sha256") -> str:
        """The body's `algorithm` digest as a manifest records it, read in chunks, one
        heartbeat per chunk."""
        return digest_chunks(self.chunks(where, path), beat, algorithm)

    def state_of(self, archive: Location, path: str) -> str | None:
        """readable / ongoing / archived for the archive's copy; None when it has none."""
        head = self.head(archive, path)
        return None if head is None else restore_state(head)


class Stores(ObjectStore):
    """Every call handed to the store of the location it names; a store is built at its
    first use, so an S3-only runbook never needs Google credentials (and the reverse)."""

    def __init__(self, **factories: Callable[[], ObjectStore]):
        self._factories = factories  # scheme -> factory
        self._built: dict[str, ObjectStore] = {}

    def of(self, where: Location) -> ObjectStore:
        return self.store(where.scheme)

    def store(self, scheme: str) -> Any:
        """The store of `scheme` ("s3" / "gs"), built at its first use."""
        if scheme not in self._built:
            self._built[scheme] = self._factories[scheme]()
        return self._built[scheme]

    def listed(self, where: Location) -> dict[str, dict[str, Any]]:
        return self.of(where).listed(where)

    def read(self, where: Location, path: str) -> bytes:
        return self.of(where).read(where, path)

    def head(self, where: Location, path: str) -> dict[str, Any] | None:
        return self.of(where).head(where, path)

    def chunks(self, where: Location, path: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        return self.of(where).chunks(where, path, start, end)

    def put_json(self, where: Location, name: str, body: bytes) -> None:
        self.of(where).put_json(where, name, body)

    def confirm(self, where: Location, entry: ManifestEntry, head: dict[str, Any]) -> tuple[bool, str] | None:
        return self.of(where).confirm(where, entry, head)

    def describe(self, where: Location, path: str, head: dict[str, Any]) -> tuple[ManifestEntry, bool]:
        return self.of(where).describe(where, path, head)

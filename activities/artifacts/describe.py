"""Describe an existing prefix as the manifest it deserves (`drpilot artifacts manifest`).

Each entry comes from what S3 knows of the object (its checksums, its part layout); a body
is read and hashed only for an object S3 keeps no checksum of.
"""

from __future__ import annotations

from temporalio.exceptions import ApplicationError

from activities.artifacts.manifest import Manifest, ManifestEntry, entry_from_s3, stored_checksums
from activities.artifacts.objects import Location, S3Objects
from activities.artifacts.progress import Beat, parallel
from activities.contracts import ErrorType


def describe_prefix(objects: S3Objects, workers: int, where: Location, name: str) -> tuple[Manifest, int]:
    """The manifest an existing prefix deserves, from what S3 knows of each object, and
    how many bodies had to be read for it (objects S3 keeps no checksum of)."""
    listed = {p: o for p, o in objects.listed(where).items() if p != name and not p.endswith("/")}
    entries: dict[str, ManifestEntry] = {}
    hashed = 0

    def describe(path: str) -> tuple[ManifestEntry, bool]:
        head = objects.head(where, path)
        if head is None:
            raise ApplicationError(f"{where.uri(path)} vanished while being described", type=ErrorType.S3_CHANGED)
        parts = None
        if "-" in str(head.get("ETag", "")) and stored_checksums(head):
            # A multipart upload: whether its checksum is FULL_OBJECT or COMPOSITE, and
            # the parts, come from GetObjectAttributes (moto's HEAD leaves out the
            # x-amz-checksum-type and "-N" that S3's HEAD reports).
            kind, parts = objects.object_parts(where, path)
            head = {**head, "ChecksumType": kind or head.get("ChecksumType")}
        entry, found = entry_from_s3(path, head, parts)
        if found:
            return entry, False
        sha256, _ = objects.hash(where, path, Beat())
        return entry.model_copy(update={"sha256": sha256}), True

    def done(path: str, result: tuple[ManifestEntry, bool]) -> None:
        nonlocal hashed
        entries[path], read = result
        hashed += read

    parallel(workers, sorted(listed), describe, done)
    return Manifest(files=[entries[p] for p in sorted(entries)]), hashed

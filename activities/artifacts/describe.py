"""Describe an existing prefix as the manifest it deserves (`drpilot artifacts manifest`).

Each entry comes from what the store knows of the object (S3's checksums and part layout,
Cloud Storage's CRC32C and MD5); a body is read and hashed only for an object the store
keeps no checksum of.
"""

from __future__ import annotations

from temporalio.exceptions import ApplicationError

from activities.artifacts.manifest import Manifest, ManifestEntry
from activities.artifacts.objects import Location, ObjectStore
from activities.artifacts.progress import Beat, parallel
from activities.contracts import ErrorType


def describe_prefix(objects: ObjectStore, workers: int, where: Location, name: str) -> tuple[Manifest, int]:
    """The manifest an existing prefix deserves, from what its store knows of each object,
    and how many bodies had to be read for it (objects the store keeps no checksum of)."""
    listed = {p: o for p, o in objects.listed(where).items() if p != name and not p.endswith("/")}
    entries: dict[str, ManifestEntry] = {}
    hashed = 0

    def describe(path: str) -> tuple[ManifestEntry, bool]:
        head = objects.head(where, path)
        if head is None:
            raise ApplicationError(f"{where.uri(path)} vanished while being described", type=ErrorType.S3_CHANGED)
        entry, found = objects.describe(where, path, head)
        if found:
            return entry, False
        return entry.model_copy(update={"sha256": objects.hash(where, path, Beat())}), True

    def done(path: str, result: tuple[ManifestEntry, bool]) -> None:
        nonlocal hashed
        entries[path], read = result
        hashed += read

    parallel(workers, sorted(listed), describe, done)
    return Manifest(files=[entries[p] for p in sorted(entries)]), hashed

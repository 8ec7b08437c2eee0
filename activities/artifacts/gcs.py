"""The Cloud Storage implementation of `ObjectStore`, through google-cloud-storage.

Cloud Storage keeps a CRC32C of every object, composite ones too, and an MD5 of every
object that is not composite (Cloud Storage docs, "Hashes and ETags: best practices"), so a
file whose manifest entry records either is confirmed from its metadata without a read.
The client uses Application Default Credentials; against a loopback endpoint (the sandbox's
emulator) it is anonymous, as Cloud DNS's is (activities/dns/clouddns.py).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlparse

from google.api_core import exceptions as google_errors
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage

from activities.artifacts.gcs_errors import gcs_errors
from activities.artifacts.manifest import ManifestEntry
from activities.artifacts.objects import CHUNK_BYTES, Location, ObjectStore
from drpilot.domain.settings import Settings

SANDBOX_PROJECT = "drpilot-sandbox"  # what an anonymous client names; the emulator ignores it
# google-cloud-storage fetches each bucket's metadata (storage.buckets.get) in a background
# thread, only to label OpenTelemetry spans, which drpilot does not export; its role
# (infra/gcp/storage-role.yaml) grants no bucket permission. Off unless the operator says.
_BUCKET_METADATA_OFF = "DISABLE_GCS_PYTHON_CLIENT_OTEL_BUCKET_METADATA"


def gcs_client(settings: Settings | None = None) -> storage.Client:
    """A Cloud Storage client: Application Default Credentials against Google, or anonymous
    against a loopback endpoint (DRPILOT_GCS_ENDPOINT, the sandbox's emulator)."""
    os.environ.setdefault(_BUCKET_METADATA_OFF, "true")
    endpoint = settings.providers.gcs_endpoint if settings else None
    options = ClientOptions(api_endpoint=endpoint.rstrip("/")) if endpoint else None
    if endpoint and urlparse(endpoint).hostname in ("127.0.0.1", "localhost", "::1"):
        return storage.Client(project=SANDBOX_PROJECT, credentials=AnonymousCredentials(), client_options=options)
    with gcs_errors("*", "finding Application Default Credentials", "storage.objects.get"):
        return storage.Client(client_options=options)


class GcsObjects(ObjectStore):
    def __init__(self, client: storage.Client):
        self.client = client

    def blob(self, where: Location, path: str) -> storage.Blob:
        return self.client.bucket(where.bucket).blob(where.key(path))

    def listed(self, where: Location) -> dict[str, dict[str, Any]]:
        listed: dict[str, dict[str, Any]] = {}
        with gcs_errors(where.bucket, f"listing {where.uri()}", "storage.objects.list"):
            for blob in self.client.list_blobs(where.bucket, prefix=where.prefix):
                listed[blob.name[len(where.prefix) :]] = {
                    "Size": int(blob.size or 0),
                    "StorageClass": blob.storage_class,
                    "LastModified": blob.updated,
                }
        return listed

    def read(self, where: Location, path: str) -> bytes:
        with gcs_errors(where.bucket, f"reading {where.uri(path)}", "storage.objects.get"):
            return self.blob(where, path).download_as_bytes()

    def head(self, where: Location, path: str) -> dict[str, Any] | None:
        with gcs_errors(where.bucket, f"reading {where.uri(path)}", "storage.objects.get"):
            blob = self.client.bucket(where.bucket).get_blob(where.key(path))
        if blob is None:
            return None
        return {
            "ContentLength": int(blob.size or 0),
            "StorageClass": blob.storage_class,
            "LastModified": blob.updated,
            "crc32c": blob.crc32c,
            "md5Hash": blob.md5_hash,
            "componentCount": blob.component_count,
            "generation": blob.generation,
        }

    def chunks(self, where: Location, path: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        blob = self.blob(where, path)
        with gcs_errors(where.bucket, f"reading {where.uri(path)}", "storage.objects.get"):
            if end is None:
                end = int(self.client.bucket(where.bucket).get_blob(where.key(path)).size or 0)
            for first in range(start, end, CHUNK_BYTES):
                last = min(first + CHUNK_BYTES, end) - 1  # inclusive, as the client takes it
                # A range has no stored checksum of its own: the caller hashes what it reads.
                yield blob.download_as_bytes(start=first, end=last, checksum=None)

    def put_json(self, where: Location, name: str, body: bytes) -> None:
        with gcs_errors(where.bucket, f"writing {where.uri(name)}", "storage.objects.create"):
            self.blob(where, name).upload_from_string(body, content_type="application/json", checksum="crc32c")

    # ------------------------------------------------------------------ resumable uploads
    # The JSON API's resumable upload protocol ("Perform resumable uploads"), over the
    # client's own authorized session: the library has no public way to continue a session
    # another process opened.
    def open_session(self, where: Location, path: str, size: int, crc32c: str | None) -> str:
        """A resumable upload session for `path` of `size` bytes; its URL."""
        blob = self.blob(where, path)
        if crc32c:
            blob.crc32c = crc32c  # Cloud Storage refuses the finished object if it differs
        return blob.create_resumable_upload_session(size=size)

    def send_chunk(self, session: str, body: bytes, offset: int, size: int) -> int:
        """PUT `body` at `offset`; the bytes the session holds afterwards."""
        last = offset + len(body) - 1
        reply = self.client._http.put(session, data=body, headers={"Content-Range": f"bytes {offset}-{last}/{size}"})
        return self._persisted(reply, size)

    def session_offset(self, session: str, size: int) -> int | None:
        """How many bytes the session holds (size when it finished); None when it is gone."""
        reply = self.client._http.put(session, data=b"", headers={"Content-Range": f"bytes */{size}"})
        if reply.status_code in (404, 410):  # expired (a week) or never existed: start a new one
            return None
        return self._persisted(reply, size)

    @staticmethod
    def _persisted(reply: Any, size: int) -> int:
        if reply.status_code in (200, 201):
            return size
        if reply.status_code == 308:  # incomplete: Range says what it kept, if anything
            kept = reply.headers.get("Range")
            return int(kept.rpartition("-")[2]) + 1 if kept else 0
        raise google_errors.from_http_response(reply)

    def confirm(self, where: Location, entry: ManifestEntry, head: dict[str, Any]) -> tuple[bool, str] | None:
        crc32c, md5 = head.get("crc32c"), head.get("md5Hash")
        if entry.crc32c and crc32c:
            if crc32c == entry.crc32c:
                return True, "CRC32C"
            return False, f"crc32c {crc32c}, manifest says {entry.crc32c}"
        # A composite object has no MD5 (only its CRC32C): only a read can tell then.
        if entry.md5 and md5:
            if md5 == entry.md5:
                return True, "MD5"
            return False, f"md5 {md5}, manifest says {entry.md5}"
        return None

    def describe(self, where: Location, path: str, head: dict[str, Any]) -> tuple[ManifestEntry, bool]:
        entry = ManifestEntry(path=path, size=head["ContentLength"], crc32c=head.get("crc32c"), md5=head.get("md5Hash"))
        return entry, bool(entry.crc32c or entry.md5)

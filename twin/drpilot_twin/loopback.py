"""Serve an ASGI app on 127.0.0.1 from a background thread, so a twin part runs in-process.

uvicorn does the HTTP/1.1 work a provider SDK relies on (keep-alive, chunked uploads,
`Expect: 100-continue`); this class only binds the socket first (port 0 means the kernel
picks, and the port is known before anyone dials it) and makes stop() leave no thread.
"""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Callable

import uvicorn


class _ClosingServer(uvicorn.Server):
    """Drops open connections at shutdown instead of waiting for them.

    Clients keep idle TLS keep-alive connections in their pools; a graceful TLS close waits
    for each peer's close_notify, which an idle pool never sends, so every stop() would hang
    for the whole grace period. A server going away drops them too.
    """

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for connection in list(self.server_state.connections):
            transport = getattr(connection, "transport", None)
            if transport is not None:
                transport.abort()
        await super().shutdown(sockets)


class LoopbackServer:
    """`tls`: a factory of the server's SSLContext, for parts that must speak HTTPS (the
    Kubernetes API emulator: kubectl sends bearer tokens only over TLS)."""

    def __init__(
        self,
        app,
        port: int = 0,
        name: str = "sandbox-http",
        lifespan: str = "auto",
        tls: Callable[[], ssl.SSLContext] | None = None,
    ):
        self._app = app
        self._tls = tls
        self._lifespan = lifespan
        self._port = port
        self._name = name
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None
        self.url = ""

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1]) if self.url else 0

    def start(self, timeout: float = 10.0) -> None:
        if self._thread is not None:
            return
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self._port))
        sock.listen(128)
        self._socket = sock
        host, port = sock.getsockname()
        config = uvicorn.Config(
            self._app,
            log_level="warning",
            access_log=False,
            lifespan=self._lifespan,
            interface="asgi3",
            proxy_headers=False,
            server_header=False,
            date_header=False,
            # A client holding a keep-alive connection must not keep stop() waiting.
            timeout_graceful_shutdown=2,
            timeout_keep_alive=30,
            **({"ssl_context_factory": lambda _config, _default: self._tls()} if self._tls else {}),
        )
        self._server = _ClosingServer(config) if self._tls else uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name=self._name, daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{self._name} did not start on 127.0.0.1:{port}")
            time.sleep(0.005)
        self.url = f"{'https' if self._tls else 'http'}://{host}:{port}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._socket is not None:
            self._socket.close()
        self._server = self._thread = self._socket = None

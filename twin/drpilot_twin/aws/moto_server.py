"""moto in server mode, on loopback: the twin's AWS (S3 and Route53 behind its own front)."""

from __future__ import annotations

import logging

import httpx
from moto.server import ThreadedMotoServer

# Dummy credentials: moto accepts any, and they keep boto3 from looking for real ones.
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "sandbox",
    "AWS_SECRET_ACCESS_KEY": "sandbox",
    "AWS_DEFAULT_REGION": "us-east-1",
}


class MotoServer:
    def __init__(self, port: int = 0):
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        self.url = ""

    def start(self) -> None:
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.url = f"http://{host}:{port}"

    def stop(self) -> None:
        self._server.stop()

    def reset(self) -> None:
        httpx.post(f"{self.url}/moto-api/reset").raise_for_status()

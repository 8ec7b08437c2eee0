"""Credentials rotated on disk are used from the next call on, without a worker restart.

A Kubernetes Secret volume swaps its files in place when the Secret changes; a key rotated
by hand rewrites the file. Clients built from such files (kubeconfig, AWS shared credentials
and config) are rebuilt when the files' identity changes. Roles (IRSA, EKS Pod Identity,
GKE Workload Identity) refresh themselves inside the SDKs and need none of this.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable
from typing import Any

from botocore.config import Config

Signature = tuple[tuple[int, int, int], ...]


def files_signature(paths: Iterable[str]) -> Signature:
    """(inode, mtime, size) of each file as it is now; a missing file is (0, 0, 0)."""
    signature = []
    for path in paths:
        try:
            st = os.stat(path)
        except OSError:
            signature.append((0, 0, 0))
            continue
        signature.append((st.st_ino, st.st_mtime_ns, st.st_size))
    return tuple(signature)


def aws_config(*, read_timeout: float = 30, attempts: int = 4, connect_timeout: float = 5, **more: Any) -> Config:
    """How every AWS client drpilot makes is bounded: a dead endpoint costs `connect_timeout`,
    a silent one `read_timeout`, each of at most `attempts` tries (standard retries back off
    with jitter on throttling and 5xx). botocore's own default read timeout is 60 s with
    legacy retries; a worker keeps a blocked activity heartbeating (drpilot/frontdoor/
    keepalive.py), so a call must end on its own for a retry to take over."""
    return Config(
        connect_timeout=connect_timeout, read_timeout=read_timeout, retries={"mode": "standard", "max_attempts": attempts}, **more
    )


def aws_credential_files() -> list[str]:
    """Where boto3 reads static credentials and profiles, as it resolves them."""
    return [
        os.environ.get("AWS_SHARED_CREDENTIALS_FILE") or os.path.expanduser("~/.aws/credentials"),
        os.environ.get("AWS_CONFIG_FILE") or os.path.expanduser("~/.aws/config"),
    ]


class Rotating:
    """A client that is built again by `make` when its credential files change on disk;
    attribute access goes to the current client, so callers use it as the client itself."""

    def __init__(self, make: Callable[[], Any], files: Callable[[], list[str]] = aws_credential_files):
        self._make = make
        self._files = files
        self._lock = threading.Lock()
        self._signature: Signature | None = None
        self._client: Any = None

    def current(self) -> Any:
        with self._lock:
            signature = files_signature(self._files())
            if signature != self._signature:
                self._client = self._make()
                self._signature = signature
            return self._client

    def __getattr__(self, name: str) -> Any:
        return getattr(self.current(), name)


def regional_clients(config: Any) -> Callable[[str, str], Rotating]:
    """`aws(service, region)`: one rotating boto3 client per (service, region), built on first
    use with the botocore `config` (retries, timeouts)."""
    import boto3

    made: dict[tuple[str, str], Rotating] = {}
    lock = threading.Lock()

    def aws(service: str, region: str) -> Rotating:
        with lock:
            if (service, region) not in made:
                made[(service, region)] = Rotating(
                    lambda: boto3.session.Session().client(service, region_name=region, config=config)
                )
            return made[(service, region)]

    return aws

"""`drpilot worker` processes for the benches: started as an operator starts one, and counted
ready when the worker's own /readyz says so (Temporal answers its client and its pollers run),
not after a guessed sleep: a worker still importing when a bench's clock starts would put its
start-up into the measurement (and, once it took longer than the guess, did)."""

from __future__ import annotations

import subprocess
import sysconfig
import time
from pathlib import Path

import httpx

from drpilot.frontdoor.ports import free_loopback_port

DRPILOT = str(Path(sysconfig.get_path("scripts")) / "drpilot")
READY_SECONDS = 60.0


def spawn_worker(env: dict[str, str]) -> subprocess.Popen:
    """A worker in its own process group (so a bench can SIGKILL it whole), not waited for."""
    return subprocess.Popen([DRPILOT, "worker"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)


def ready_workers(env: dict[str, str], count: int = 1) -> list[subprocess.Popen]:
    """`count` workers, each with its health endpoint on its own loopback port, returned once
    every one answers /readyz 200."""
    ports = [free_loopback_port() for _ in range(count)]
    workers = [spawn_worker({**env, "DRPILOT_HEALTH_LISTEN": f"127.0.0.1:{port}"}) for port in ports]
    deadline = time.monotonic() + READY_SECONDS
    for worker, port in zip(workers, ports, strict=True):
        while True:
            if worker.poll() is not None:
                raise SystemExit(f"drpilot worker exited with {worker.returncode} before it was ready")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"drpilot worker was not ready in {READY_SECONDS:g} s")
            time.sleep(0.1)
    return workers


def ready_worker(env: dict[str, str]) -> subprocess.Popen:
    return ready_workers(env, 1)[0]

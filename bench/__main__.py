"""`make bench` / `make bench-fleet`: measure, then write BENCHMARKS.md (each section with its
command, machine and load).

`python -m bench` (`make bench`) measures every section but the fleet's two, under 20 minutes on
two cores; `python -m bench fleet` (`make bench-fleet`) the evacuation of 200 runbooks and the
worker lost per phase; `python -m bench NAME...` the sections named (SECTIONS). A run rewrites the
sections it measured and keeps the others as last measured.

Measured here, never asserted in tests:
1. runbook loading (YAML + validation) per example runbook;
2. `drpilot sandbox up` to its "sandbox ready" line, per example runbook (issue target: < 10 s);
3. a failover and a failback through the CLI against the twin at rehearsal speed, with the
   achieved RTO the run reports and its unscaled equivalent;
4. artifacts at checkpoint scale: verify with S3's checksums vs. hashing, sync (bench/artifacts.py);
   the same in Cloud Storage, and a copy streamed from Cloud Storage into S3 (bench/gcs.py);
   capacity readiness of a region of 500 nodes and 2,000 pods (bench/capacity.py);
5. evacuation: 1, 10, 50 runbooks failing over at once through two workers, and 200 with their RTOs
   projected to speed 1 (`make bench-fleet`) (bench/evacuation.py);
6. alert intake: webhook POST to a started run, sustained duplicates, a storm (bench/intake.py);
7. chaos: worker SIGKILLs and a Temporal restart over a failover + failback (bench/chaos.py);
   a worker lost in each phase of a failover and a failback, with two running (`make bench-fleet`,
   bench/worker_loss.py);
8. RTO efficiency against the critical-path bound and the sequential procedure, and the
   rehearsal projection against a speed-1 run (bench/rto.py);
9. engine overhead: drpilot vs a plain script making the same provider calls, and per-activity
   scheduling latency from the runs' histories (bench/overhead.py);
10. bad input: hypothesis-generated malformed runbooks, rules files and webhook bodies, counted
   as clean errors or crashes (bench/bad_input.py);
11. the console: its home page with 200 runbooks, and 50 people watching one run (bench/console.py).

Each module runs alone too (`python -m bench.chaos`); its settings are BENCH_* variables.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from drpilot_twin.twin import parse_env

from bench.artifacts import ARTIFACTS_HEADER, ARTIFACTS_NOTE, bench_artifacts
from bench.bad_input import BAD_INPUT_HEADER, BAD_INPUT_NOTE, bench_bad_input
from bench.capacity import CAPACITY_HEADER, CAPACITY_NOTE, bench_capacity
from bench.chaos import CHAOS_HEADER, CHAOS_NOTE, bench_chaos
from bench.console import CONSOLE_HEADER, CONSOLE_NOTE, bench_console
from bench.evacuation import (
    EVACUATION_FLEET_HEADER,
    EVACUATION_FLEET_NOTE,
    EVACUATION_HEADER,
    EVACUATION_NOTE,
    bench_evacuation,
    bench_evacuation_fleet,
)
from bench.gcs import GCS_HEADER, GCS_NOTE, bench_gcs
from bench.intake import INTAKE_HEADER, INTAKE_NOTE, bench_intake
from bench.overhead import OVERHEAD_HEADER, OVERHEAD_NOTE, bench_overhead
from bench.rto import RTO_HEADER, RTO_NOTE, bench_rto
from bench.worker_loss import WORKER_LOSS_HEADER, WORKER_LOSS_NOTE, bench_worker_loss
from bench.workers import DRPILOT, ready_worker, stop
from drpilot.domain.loader import load_runbook

ROOT = Path(__file__).resolve().parent.parent
RUNBOOKS = sorted((ROOT / "runbooks").glob("*.yaml"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores ({cpu}), {memory:.0f} GiB, Python {platform.python_version()}"


def spread(values: list[float], unit: str, digits: int = 2) -> str:
    return f"median {statistics.median(values):.{digits}f} {unit} (min {min(values):.{digits}f}, max {max(values):.{digits}f}, n={len(values)})"


def bench_loading() -> list[str]:
    rows = []
    for path in RUNBOOKS:
        times = []
        for _ in range(50):
            start = time.perf_counter()
            load_runbook(path)
            times.append((time.perf_counter() - start) * 1000)
        rows.append(f"| load + validate `{path.name}` | {spread(times, 'ms')} |")
    return rows


def sandbox_up(runbook: Path, state: Path, *extra: str) -> tuple[subprocess.Popen, float]:
    start = time.perf_counter()
    process = subprocess.Popen(
        [DRPILOT, "sandbox", "up", "--runbook", str(runbook), "--state-dir", str(state), *extra],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, start_new_session=True,
    )
    assert process.stdout is not None
    for line in process.stdout:
        if line.startswith("sandbox ready"):
            return process, time.perf_counter() - start
    raise SystemExit(f"sandbox for {runbook.name} did not start")


def bench_sandbox(tmp: Path) -> list[str]:
    rows = []
    for path in RUNBOOKS:
        times = []
        for i in range(ROUNDS):
            process, seconds = sandbox_up(path, tmp / f"up-{path.stem}-{i}")
            stop(process)
            times.append(seconds)
        rows.append(f"| `drpilot sandbox up --runbook {path.name}` to ready | {spread(times, 's')} |")
    return rows


def bench_runs(tmp: Path, speed: str = "300") -> list[str]:
    runbook = ROOT / "runbooks" / "llm-inference.yaml"
    state = tmp / "runs"
    process, _ = sandbox_up(runbook, state, "--speed", speed)
    env = {**os.environ, **parse_env(state / "env")}
    worker = ready_worker(env)
    rows = []
    try:
        for action, args in (
            ("failover", ["--from", "us-east-1"]),
            ("failback", ["--to", "us-east-1"]),
        ):
            if action == "failover":
                subprocess.run([DRPILOT, "sandbox", "fault", "--state-dir", str(state), "set", "region_down=us-east-1"],
                               env=env, check=True, capture_output=True)
            else:
                subprocess.run([DRPILOT, "sandbox", "fault", "--state-dir", str(state), "clear"],
                               env=env, check=True, capture_output=True)
            start = time.perf_counter()
            done = subprocess.run([DRPILOT, action, str(runbook), *args, "--yes", "--wait", "--json"],
                                  env=env, capture_output=True, text=True, timeout=600)
            wall = time.perf_counter() - start
            result = json.loads(done.stdout)
            if action == "failover":
                outcome = (f"{result['status']}; wall {wall:.1f} s; RTO {result['rto_seconds']:.1f} s "
                           f"(projected at speed 1: {result['rto_seconds_unscaled']:.0f} s; objective "
                           f"{result['objective_rto_seconds']:.0f} s)")
            else:
                outcome = f"{result['status']}; wall {wall:.1f} s; all traffic home after {result['rto_seconds']:.1f} s"
            rows.append(f"| `drpilot {action} runbooks/llm-inference.yaml {' '.join(args)} --wait` at speed {speed} | {outcome} |")
    finally:
        stop(worker, process)
    return rows


RUNS_HEADER = [
    "## Runbooks: loading, the sandbox's start, a failover and a failback",
    "",
    "`python -m bench runs` (also part of `make bench`; `BENCH_ROUNDS` sets the rounds).",
    "",
    "| what | result |",
    "| --- | --- |",
]
RUNS_NOTE = [
    "Reading the run rows: at rehearsal speed every wait is divided by the speed, but process",
    "start, polling and HTTP round trips are not; the projection counts each scaled wait at its",
    "speed-1 length and the rest as measured (checked against a speed-1 run below). The failback",
    "row is dominated by its five bakes (5 x 15m / speed) and is not judged against the RTO objective.",
]


def bench_base() -> list[str]:
    with tempfile.TemporaryDirectory(prefix="drpilot-bench-") as tmp:
        return [*bench_loading(), *bench_sandbox(Path(tmp)), *bench_runs(Path(tmp))]


def bench_rto_rows() -> list[str]:
    rows, notes = bench_rto()
    return [*rows, "", *notes]


# Every section of BENCHMARKS.md, in its order: name -> (header, rows, note). A run rewrites the
# sections it measures and keeps the others as they were last measured.
SECTIONS: dict[str, tuple[list[str], Callable[[], list[str]], list[str]]] = {
    "runs": (RUNS_HEADER, bench_base, RUNS_NOTE),
    "artifacts": (ARTIFACTS_HEADER, bench_artifacts, ARTIFACTS_NOTE),
    "gcs": (GCS_HEADER, bench_gcs, GCS_NOTE),
    "capacity": (CAPACITY_HEADER, bench_capacity, CAPACITY_NOTE),
    "evacuation": (EVACUATION_HEADER, bench_evacuation, EVACUATION_NOTE),
    "evacuation-fleet": (EVACUATION_FLEET_HEADER, bench_evacuation_fleet, EVACUATION_FLEET_NOTE),
    "intake": (INTAKE_HEADER, bench_intake, INTAKE_NOTE),
    "chaos": (CHAOS_HEADER, bench_chaos, CHAOS_NOTE),
    "worker-loss": (WORKER_LOSS_HEADER, bench_worker_loss, WORKER_LOSS_NOTE),
    "overhead": (OVERHEAD_HEADER, bench_overhead, OVERHEAD_NOTE),
    "bad-input": (BAD_INPUT_HEADER, bench_bad_input, BAD_INPUT_NOTE),
    "rto": (RTO_HEADER, bench_rto_rows, RTO_NOTE),
    "console": (CONSOLE_HEADER, bench_console, CONSOLE_NOTE),
}
# `make bench-fleet`: the two that take minutes each (200 runbooks at once; a kill per phase).
FLEET = ["evacuation-fleet", "worker-loss"]
GROUPS = {"default": [s for s in SECTIONS if s not in FLEET], "fleet": FLEET, "all": list(SECTIONS)}
TARGETS = {"default": "make bench", "fleet": "make bench-fleet"}
INTRO = [
    "# Benchmarks",
    "",
    "Written by `make bench` (`python -m bench`: every section but two, under 20 minutes on this",
    "machine, 2 cores) and `make bench-fleet` (`python -m bench fleet`: the evacuation of 200 runbooks",
    "and the worker lost per phase, about 13 minutes); `python -m bench NAME...` measures the named",
    "sections and rewrites only those, keeping the others as last measured. Names:",
    ", ".join(f"`{name}`" for name in SECTIONS) + ".",
    "Each section says when, how and on what it was measured. Timings are whole-process wall clock",
    "(run it while the machine is otherwise idle); they are measurements, not test assertions.",
    "",
]


def chosen(args: list[str]) -> list[str]:
    names: list[str] = []
    for arg in args or ["default"]:
        if arg not in SECTIONS and arg not in GROUPS:
            raise SystemExit(f"python -m bench: no section or group {arg!r}; "
                             f"sections: {', '.join(SECTIONS)}; groups: {', '.join(GROUPS)}")
        names += [n for n in GROUPS.get(arg, [arg]) if n not in names]
    return names


def measured(began_utc: float, minutes: float, load: tuple[float, float, float], command: str) -> str:
    return (f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(began_utc))} in {minutes:.1f} minutes by "
            f"`{command}` on {machine()}; load average at the start {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} "
            "(1 / 5 / 15 min: above 0 means other work shared the cores).")


def sections_of(text: str) -> tuple[list[str], dict[str, list[str]]]:
    """BENCHMARKS.md's lines before its first section, and each section's lines by heading."""
    intro: list[str] = []
    sections: dict[str, list[str]] = {}
    current = intro
    for line in text.splitlines():
        if line.startswith("## "):
            current = sections.setdefault(line, [])
        current.append(line)
    return intro, sections


def main(args: list[str]) -> int:
    names = chosen(args)
    command = " ".join(["python", "-m", "bench", *args]) + "".join(
        f" {k}={v}" for k, v in sorted(os.environ.items()) if k.startswith("BENCH_"))
    path = ROOT / "BENCHMARKS.md"
    old_intro, old = sections_of(path.read_text() if path.exists() else "")
    runs = [line for line in old_intro if line.startswith("Last run of `make bench")]
    began, load = time.monotonic(), os.getloadavg()
    new: dict[str, list[str]] = {}

    def write() -> None:  # after each section: a run stopped half-way keeps what it measured
        body = []
        for name, (header, _, _) in SECTIONS.items():
            lines = new.get(header[0]) or old.get(header[0])
            body += lines or [header[0], "", f"Not measured yet: `python -m bench {name}`.", ""]
        path.write_text("\n".join([*INTRO, *([*sorted(runs), ""] if runs else []), *body]).rstrip("\n") + "\n")

    for name in names:
        header, bench, note = SECTIONS[name]
        start, start_load, start_utc = time.monotonic(), os.getloadavg(), time.time()
        rows = bench()
        stamp = measured(start_utc, (time.monotonic() - start) / 60, start_load, command)
        new[header[0]] = [*header, *rows, "", stamp, "", *note, ""]
        print("\n".join(new[header[0]]), flush=True)
        write()
    for group, target in TARGETS.items():
        if names == GROUPS[group]:
            runs = [line for line in runs if not line.startswith(f"Last run of `{target}`")]
            runs.append(f"Last run of `{target}`: {time.strftime('%Y-%m-%d %H:%M UTC')}, "
                        f"{(time.monotonic() - began) / 60:.1f} minutes in all, load average at the start "
                        f"{load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}, on {machine()}.")
    write()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""RTO efficiency (issue 13, 3.2) and the rehearsal projection checked against speed 1.

A failover of `runbooks/llm-inference.yaml` away from a dark us-east-1, against the twin
with realistic provider latencies (LATENCIES: pods ready in 90 s, Route53 PENDING 40 s;
the runbook's DNS TTL of 60 s and health gate of 3 rounds 5 s apart). Each strategy is
rehearsed at BENCH_RTO_SPEED; its projected RTO (workflows/projection.py) is compared with

- the critical-path lower bound: the same latencies along the strategy's dependencies,
  every engine, request and polling cost at zero;
- the reference procedure's strictly sequential order (DNS, then pods, then health).

Then one strategy runs again at speed 1 (BENCH_RTO_CHECK: ungraceful, whose parallel DNS
and prepare branches are the hard part of the projection) and the projection made at speed
S is compared with that measured RTO: the goal is within 10 %.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

from drpilot_twin.twin import Twin

from bench.evacuation import BASE
from bench.workers import DRPILOT, ready_worker, stop
from drpilot.domain.loader import load_runbook

SPEED = float(os.environ.get("BENCH_RTO_SPEED", "20"))
CHECK = os.environ.get("BENCH_RTO_CHECK", "ungraceful")  # "" skips the speed-1 run
POD_START = 90.0
ROUTE53_PENDING = 40.0

RTO_HEADER = [
    "## RTO efficiency and the rehearsal projection",
    "",
    f"A failover of `{BASE.name}` away from a dark us-east-1 against the twin with realistic latencies:",
    f"pods ready in {POD_START:.0f} s, Route53 PENDING {ROUTE53_PENDING:.0f} s, the runbook's DNS TTL and health",
    "gate (3 rounds, 5 s apart). `projected` is what the rehearsal at speed S reports for speed 1;",
    "`bound` is the critical path of the same latencies with every engine cost at zero;",
    "`sequential` is the reference procedure's order (DNS and its propagation, then pods, then health).",
    "",
    "| strategy | run | RTO | bound | sequential | achieved / bound (goal <= 1.05) | achieved / sequential (goal <= 0.6) |",
    "| --- | --- | --- | --- | --- | --- | --- |",
]


def _bounds(strategy: str) -> tuple[float, float]:
    """(critical-path bound, sequential) seconds from the latencies and the runbook."""
    rb = load_runbook(BASE)
    ttl = max(r.ttl for r in rb.spec.dns.records)
    health = rb.spec.health
    gate = (health.consecutive - 1) * health.interval.total_seconds()  # rounds at 0, 5, 10 s
    dns = ROUTE53_PENDING + ttl
    sequential = dns + POD_START + gate
    if strategy == "graceful":  # prepare, gate, DNS, then the post-switch gate
        return POD_START + gate + dns + gate, sequential
    return max(dns, POD_START + gate) + gate, sequential  # DNS || (prepare, gate); then validation


def failover(strategy: str, speed: float, tmp: Path) -> dict:
    """One failover against a fresh twin at `speed`; the run's result as `--json` prints it."""
    rb = load_runbook(BASE)
    with Twin(rb, tmp / f"twin-{strategy}-{speed:g}", speed=speed, prometheus=False, alertmanager=False) as twin:
        twin.board.update(
            region_down=frozenset({"us-east-1"}),
            pod_start_seconds={"us-west-2": POD_START},
            route53_pending_seconds=ROUTE53_PENDING,
        )
        env = {**os.environ, **twin.env()}
        worker = ready_worker(env)
        try:
            done = subprocess.run(
                [DRPILOT, "failover", str(BASE), "--from", "us-east-1", "--strategy", strategy,
                 "--speed", f"{speed:g}", "--yes", "--wait", "--json"],
                env=env, capture_output=True, text=True, timeout=900,
            )
        finally:
            stop(worker)
    if not done.stdout.strip():
        raise SystemExit(f"failover at speed {speed:g} printed nothing: {done.stderr[-2000:]}")
    result = json.loads(done.stdout)
    if result["status"] != "completed":
        raise SystemExit(f"failover at speed {speed:g} ended {result['status']}: {result['messages'][-3:]}")
    return result


def _row(strategy: str, run: str, rto: float, bound: float, sequential: float) -> str:
    return (f"| {strategy} | {run} | {rto:.1f} s | {bound:.0f} s | {sequential:.0f} s | "
            f"{rto / bound:.2f} | {rto / sequential:.2f} |")


def bench_rto() -> tuple[list[str], list[str]]:
    rows: list[str] = []
    notes: list[str] = []
    projected: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="drpilot-bench-rto-") as tmp:
        for strategy in ("graceful", "ungraceful"):
            bound, sequential = _bounds(strategy)
            result = failover(strategy, SPEED, Path(tmp))
            p = result["projection"]
            projected[strategy] = p
            rows.append(_row(strategy, f"projected from speed {SPEED:g} (measured {p['measured_seconds']:.1f} s, "
                                       f"±{p['uncertainty_seconds']:.0f} s)", p["projected_seconds"], bound, sequential))
            parts = ", ".join(f"{k} {v:.0f} s" for k, v in sorted(p["waits"].items(), key=lambda kv: -kv[1]))
            notes.append(f"- {strategy} at speed {SPEED:g}: scaled waits on the critical path at speed 1: {parts}; "
                         f"everything else (Temporal, requests, warm-up) {p['other_seconds']:.1f} s as measured.")
        if CHECK:
            bound, sequential = _bounds(CHECK)
            began = time.perf_counter()
            real = failover(CHECK, 1.0, Path(tmp))
            wall = time.perf_counter() - began
            rows.append(_row(CHECK, f"measured at speed 1 (wall {wall:.0f} s with the twin's start)",
                             real["rto_seconds"], bound, sequential))
            p = projected[CHECK]
            error = (p["projected_seconds"] - real["rto_seconds"]) / real["rto_seconds"]
            notes.append(f"- Projection check ({CHECK}): projected {p['projected_seconds']:.1f} s "
                         f"(±{p['uncertainty_seconds']:.0f} s) at speed {SPEED:g} vs {real['rto_seconds']:.1f} s "
                         f"measured at speed 1: {error:+.1%} (goal within 10 %).")
    return rows, notes


RTO_NOTE = [
    "Reading it: graceful never moves DNS before the standby passed its gate, so its path is",
    "pods, gate, DNS, validation one after the other: it cannot beat the sequential procedure, which",
    "moves DNS first and checks health last (sending traffic to pods that are not ready yet). The",
    "ungraceful strategy (a region already dark) moves DNS while the standby comes up, which is where",
    "the parallel engine saves time against the sequential order. Achieved / bound is the engine's",
    "own cost: scheduling, provider requests, the warm-up requests and polling lag.",
]


if __name__ == "__main__":
    rows, notes = bench_rto()
    print("\n".join([*RTO_HEADER, *rows, "", *notes, "", *RTO_NOTE]))

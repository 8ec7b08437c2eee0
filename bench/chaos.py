"""Chaos (issue 13, 3.6): a failover and its failback while the worker is SIGKILLed at random
moments (a new worker each time), and, separately, while the Temporal dev server restarts.

Three passes of the same procedure (runbooks/llm-inference.yaml; the standby's copy of one
model shard lost, region_down=us-east-1, fail over, which restores the shard from Glacier;
fault cleared, fail back), each on a fresh twin:
1. clean: one worker, nothing broken. Its side effects are the minimum the procedure needs,
   and its wall time spreads the kills of pass 2;
2. kills: KILLS moments drawn at random over the clean pass's wall time (seeded: SEED); at
   each, SIGKILL the worker's process group and start a new worker;
3. restart: the Temporal dev server stopped and started again (same port, same sqlite db)
   in the middle of the failback's bakes.

Side effects are read from the twin, not from drpilot: Route53 changes the AWS front accepted,
Glacier restore requests it saw, Velero Restore objects in the clusters, scale changes (each
Deployment's generation above its seeded 1) and S3 copies (object versions beyond the first in
the artifact buckets, versioned for this). Duplicates are a pass's counts above the clean one.

`python -m bench.chaos` prints the rows; `make bench` puts them in BENCHMARKS.md.
"""

from __future__ import annotations

import asyncio
import os
import random
import sys
import tempfile
import time
from pathlib import Path

import boto3
from drpilot_twin.aws.moto_server import AWS_ENV
from drpilot_twin.kube.objects import DEPLOYMENTS, RESTORES
from drpilot_twin.twin import Twin

from bench.evacuation import BASE
from bench.workers import Replaced
from drpilot.domain.loader import load_runbook
from drpilot.domain.settings import load_settings
from drpilot.frontdoor.runs import RunError, result, start
from drpilot.frontdoor.temporal import connect
from workflows.types import FailbackInput, FailoverInput

KILLS = int(os.environ.get("BENCH_CHAOS_KILLS", "10"))  # the issue asks 20; 10 keeps make bench under 20 min
SEED = int(os.environ.get("BENCH_CHAOS_SEED", "13"))
SPEED = float(os.environ.get("BENCH_CHAOS_SPEED", "300"))
PAIR_TIMEOUT = 600.0  # a failover + failback not done by then is reported as not completed
LOST_SHARD = "model.safetensors"  # removed from the standby before each pass: restored from Glacier
GLACIER_SECONDS = 180.0  # an Expedited retrieval (1-5 min), divided by the speed
HOME = {"us-east-1": 100, "us-west-2": 0}
AWAY = {"us-east-1": 0, "us-west-2": 100}

CHAOS_HEADER = [
    "## Chaos: worker SIGKILLs and a Temporal restart over a failover + failback",
    "",
    "`python -m bench.chaos` (also part of `make bench`; `BENCH_CHAOS_KILLS`, `BENCH_CHAOS_SEED`,",
    f"`BENCH_CHAOS_SPEED`): `runbooks/llm-inference.yaml` at speed {SPEED:g}, a fresh twin per pass.",
    "Side effects counted in the twin: Route53 changes, Glacier restore requests, Velero Restores,",
    "scale changes (Deployment generations), S3 copies (object versions). The clean pass is the",
    "minimum; duplicates are a pass's side effects above it.",
    "",
    "| pass | result |",
    "| --- | --- |",
]
CHAOS_NOTE = [
    "A SIGKILLed worker's activities are retried by the next worker once their heartbeat or",
    "start-to-close timeout passes (Temporal cannot tell a dead worker from a slow one), and its",
    "workflow tasks once their sticky queue times out: that, not the new worker's start, is where",
    "the extra wall time goes. Activities are idempotent (they compare the world with the",
    "desired state before acting), so a retried one finds its effect done and does not repeat it.",
    f"Each pass first removes the standby's `{LOST_SHARD}` of the first model, so the failover",
    f"restores it from the Glacier archive ({GLACIER_SECONDS:.0f} s / speed), copies it in and restarts the",
    "pods: the Glacier, S3-copy and rollout paths are in the minimum and under the kills. The issue",
    "asks for 20 kills; the default is 10 to keep `make bench` under 20 minutes",
    "(`BENCH_CHAOS_KILLS=20` for the full figure).",
]


def version_artifact_buckets(twin: Twin) -> None:
    s3 = _s3(twin)
    for model in twin.runbook.spec.models:
        for uri in model.artifacts.values():
            bucket = uri.removeprefix("s3://").split("/", 1)[0]
            s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})


def _s3(twin: Twin):
    return boto3.client("s3", endpoint_url=twin.moto.url, aws_access_key_id=AWS_ENV["AWS_ACCESS_KEY_ID"],
                        aws_secret_access_key=AWS_ENV["AWS_SECRET_ACCESS_KEY"], region_name=AWS_ENV["AWS_DEFAULT_REGION"])


def side_effects(twin: Twin) -> dict[str, int]:
    s3 = _s3(twin)
    copies = 0
    buckets = {uri.removeprefix("s3://").split("/", 1)[0] for m in twin.runbook.spec.models for uri in m.artifacts.values()}
    for bucket in sorted(buckets):
        seen: dict[str, int] = {}
        for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
            for version in page.get("Versions", []):
                seen[version["Key"]] = seen.get(version["Key"], 0) + 1
        copies += sum(n - 1 for n in seen.values())
    restores = scale = 0
    for cluster in twin.clusters.values():
        with cluster.store.lock:
            restores += sum(1 for _ in cluster.store.items(RESTORES))
            scale += sum(int(d["metadata"].get("generation", 1)) - 1 for d in cluster.store.items(DEPLOYMENTS))
    return {
        "Route53 changes": twin.aws.change_count,
        "Glacier restore requests": sum(twin.aws.log.restore_requests.values()),
        "Velero Restores": restores,
        "scale changes": scale,
        "S3 copies": copies,
    }


async def _outcome(client, handle, deadline: float):
    """The run's result, asking again while Temporal restarts (the long poll breaks then)."""
    while True:
        try:
            return await asyncio.wait_for(result(client.get_workflow_handle(handle.id)), max(1.0, deadline - time.monotonic()))
        except RunError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)


async def _pair(twin: Twin, settings, during) -> tuple[list, float]:
    """Fail over, then fail back, with `during(begin)` running alongside; outcomes, wall time."""
    client = await connect(settings.temporal)
    begin = time.monotonic()
    deadline = begin + PAIR_TIMEOUT
    chaos = asyncio.create_task(during(begin))
    outcomes = []
    try:
        twin.board.update(region_down=frozenset({"us-east-1"}))
        for request in (
            FailoverInput(runbook=twin.runbook, failed_region="us-east-1", speed=SPEED, reason="bench: chaos"),
            FailbackInput(runbook=twin.runbook, original_region="us-east-1", speed=SPEED, reason="bench: chaos"),
        ):
            if isinstance(request, FailbackInput):
                twin.board.clear()
            while True:  # admission may be unreachable for a moment while a worker restarts
                try:
                    started = await start(client, settings, request)
                    break
                except RunError:
                    if time.monotonic() > deadline:
                        raise
                    await asyncio.sleep(0.5)
            outcomes.append(await _outcome(client, started.handle, deadline))
    finally:
        await chaos
    return outcomes, time.monotonic() - begin


def lose_standby_shard(twin: Twin) -> None:
    """The standby's copy of one model shard is gone (replication lagged): the failover must
    restore it from the Glacier archive, copy it in and restart the pods, so those side
    effects are counted too. A delete marker on the versioned bucket, as S3 does."""
    model = twin.runbook.spec.models[0]
    bucket, _, prefix = model.artifacts["us-west-2"].removeprefix("s3://").partition("/")
    _s3(twin).delete_object(Bucket=bucket, Key=f"{prefix}{LOST_SHARD}")


def run_pass(name: str, tmp: Path, during_for) -> dict:
    with Twin(load_runbook(BASE), tmp / name, speed=SPEED, prometheus=False, alertmanager=False) as twin:
        version_artifact_buckets(twin)
        lose_standby_shard(twin)
        twin.board.update(glacier_delay_seconds=GLACIER_SECONDS)
        env = {**os.environ, **twin.env()}
        workers = Replaced(env)
        try:
            before = side_effects(twin)
            outcomes, wall = asyncio.run(_pair(twin, load_settings(env), during_for(twin, workers)))
            after = side_effects(twin)
        finally:
            workers.stop()
        return {
            "name": name, "wall": wall, "outcomes": outcomes, "killed": workers.killed,
            "effects": {k: after[k] - before[k] for k in after},
            "right": [o.status == "completed" for o in outcomes] == [True, True]
            and outcomes[0].final_state.dns == AWAY and outcomes[1].final_state.dns == HOME
            and twin.weights() == HOME,
        }


def bench_chaos() -> list[str]:
    rng = random.Random(SEED)

    def nothing(twin, workers):
        async def during(begin: float) -> None:
            return None
        return during

    with tempfile.TemporaryDirectory(prefix="drpilot-chaos-") as tmp:
        clean = run_pass("clean", Path(tmp), nothing)
        print(f"chaos: clean pass {clean['wall']:.1f} s", file=sys.stderr)
        moments = sorted(rng.uniform(0, clean["wall"]) for _ in range(KILLS))

        def kills(twin, workers):
            async def during(begin: float) -> None:
                for at in moments:
                    await asyncio.sleep(max(0.0, begin + at - time.monotonic()))
                    await asyncio.to_thread(workers.kill)
            return during

        killed = run_pass("kills", Path(tmp), kills)
        print(f"chaos: kill pass {killed['wall']:.1f} s", file=sys.stderr)

        def restart(twin, workers):
            async def during(begin: float) -> None:
                # Past the failover (about a tenth of the pair), into the failback's bakes.
                await asyncio.sleep(clean["wall"] * 0.5)
                await asyncio.to_thread(twin.temporal.stop)
                await asyncio.to_thread(twin.temporal.start)
            return during

        restarted = run_pass("restart", Path(tmp), restart)
        print(f"chaos: restart pass {restarted['wall']:.1f} s", file=sys.stderr)

    rows = []
    minimum = clean["effects"]
    for p, what in (
        (clean, "clean (the minimum)"),
        (killed, f"{KILLS} worker SIGKILLs at random moments (seed {SEED}), a new worker each time"),
        (restarted, "Temporal dev server stopped and started again mid-failback (same db)"),
    ):
        completed = sum(o.status == "completed" for o in p["outcomes"])
        effects = ", ".join(f"{k} {v}" for k, v in p["effects"].items())
        duplicates = sum(max(0, v - minimum[k]) for k, v in p["effects"].items())
        kills_landed = f"; worker kills {p['killed']}" if p["killed"] else ""
        missing = sum(max(0, minimum[k] - v) for k, v in p["effects"].items())
        rows.append(
            f"| {what} | {completed}/2 runs completed; final state {'right' if p['right'] else 'WRONG'}; "
            f"wall {p['wall']:.1f} s ({p['wall'] / clean['wall']:.2f}x clean); side effects: {effects}; "
            f"**duplicates {duplicates}**{f', missing {missing}' if missing else ''}"
            f"{kills_landed} |"
        )
    return rows


if __name__ == "__main__":
    print("\n".join([*CHAOS_HEADER, *bench_chaos()]))

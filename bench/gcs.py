"""Artifacts in Cloud Storage (issue 23): verify a 300 MiB model in gs:// with the stored
CRC32C / MD5 vs. hashing every body, beside bench/artifacts.py's S3 rows; and a copy
streamed across clouds (Cloud Storage -> S3): throughput and the worker's peak memory.

The twin's parts: fake-gcs-server (a child process) behind the twin's Cloud Storage front,
moto behind the AWS front, the real google-cloud-storage and boto3 clients over loopback.
The copy runs in a child process of its own (bench/stream_copy.py), so its memory is the
worker's, not moto's, which holds every byte it stores in this process.

`python -m bench.gcs` prints the table rows; `make bench` puts them in BENCHMARKS.md.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from drpilot_twin.aws.front import AwsFront
from drpilot_twin.aws.moto_server import AWS_ENV
from drpilot_twin.aws.s3 import seed_s3, stream
from drpilot_twin.faults import FaultBoard
from drpilot_twin.gcs import GcsFront, gcs_client, seed_gcs

from activities.artifacts.activities import ArtifactActivities
from activities.artifacts.objects import Location
from activities.contracts import ArtifactInput
from bench.artifacts import ROUNDS, _size, _spread, checkpoint
from drpilot.domain.loader import load_runbook

ROOT = Path(__file__).resolve().parent.parent
MiB = 1024 * 1024
RUNBOOK = ROOT / "runbooks" / "llm-inference-multicloud.yaml"
MODEL = "chat-13b"

GCS_HEADER = [
    "## Artifacts in Cloud Storage",
    "",
    "`python -m bench.gcs` (also part of `make bench`): the same 300 MiB checkpoint layout as above,",
    "in the twin's Cloud Storage (fake-gcs-server behind the twin's front), verified by",
    "`ArtifactActivities` (8 files at once) outside Temporal; then synced from Cloud Storage into S3",
    "(moto) by a separate process, whose peak RSS is measured.",
    "",
    "| what | result |",
    "| --- | --- |",
]
GCS_NOTE = [
    "Fast verification reads each object's metadata (CRC32C, MD5) and no body, composite objects",
    "included (their CRC32C), so like S3's it stays flat as the model grows; deep verification reads",
    "every byte. The cross-cloud copy streams 16 MiB parts, 8 in flight, each read from Cloud Storage",
    "and uploaded as an S3 part: the worker holds the parts in flight (about twice each: the chunks read",
    "and the part sent), bounded by parts x part size whatever the files' sizes, never a whole file.",
]


def _upload(client, where: Location) -> int:
    """The checkpoint's files under `where`; the largest shard composed from 3 pieces, as a
    parallel upload makes it. Returns the bytes written."""
    bucket = client.bucket(where.bucket)
    total = 0
    for path, spec in checkpoint().items():
        body = stream(f"bench/{path}", spec["size"])
        total += len(body)
        if spec["size"] >= 96 * MiB:
            third = len(body) // 3
            pieces = [body[:third], body[third : 2 * third], body[2 * third :]]
            parts = []
            for i, piece in enumerate(pieces):
                part = bucket.blob(where.key(f"{path}.part{i}"))
                part.upload_from_string(piece)
                parts.append(part)
            bucket.blob(where.key(path)).compose(parts)
            for part in parts:
                part.delete()
        else:
            bucket.blob(where.key(path)).upload_from_string(body)
    return total


def bench_gcs() -> list[str]:
    board = FaultBoard()
    with tempfile.TemporaryDirectory() as state:
        gcs_front = GcsFront(board, Path(state))
        aws_front = AwsFront(board)
        gcs_front.start()
        aws_front.start()
        try:
            return _measure(gcs_front, aws_front)
        finally:
            aws_front.stop()
            gcs_front.stop()


def _measure(gcs_front: GcsFront, aws_front: AwsFront) -> list[str]:
    import boto3

    runbook = load_runbook(RUNBOOK)
    [model] = runbook.spec.models
    direct = gcs_client(gcs_front.emulator.url)
    seed_gcs(direct, runbook)
    s3 = boto3.client(
        "s3", endpoint_url=aws_front.url, region_name=AWS_ENV["AWS_DEFAULT_REGION"],
        aws_access_key_id=AWS_ENV["AWS_ACCESS_KEY_ID"], aws_secret_access_key=AWS_ENV["AWS_SECRET_ACCESS_KEY"],
    )
    seed_s3(s3, runbook, missing={"us-east-1": ["*"]})
    where = Location.parse(model.artifacts["us-central1"])
    total = _upload(direct, where)
    artifacts = ArtifactActivities(s3, gcs=lambda: gcs_client(gcs_front.url))
    described, _ = artifacts.manifest_of(where, model.manifest)
    document = described.model_copy(update={"model": MODEL, "version": model.version})
    artifacts.put_manifest(where, model.manifest, document.model_dump_json(exclude_none=True).encode())
    files = len(described.files)
    rows = []
    times: dict[str, list[float]] = {}
    reads: dict[str, int] = {}
    for mode in ("fast", "deep"):
        changed = runbook.spec.model_copy(update={"models": [model.model_copy(update={"verify": mode})]})
        verify = ArtifactInput(runbook=runbook.model_copy(update={"spec": changed}), region="us-central1", model=MODEL, version=model.version)
        times[mode] = []
        for _ in range(ROUNDS):
            gcs_front.forget()
            start = time.perf_counter()
            result = artifacts.verify(verify)
            times[mode].append(time.perf_counter() - start)
            if not result.ok:
                raise SystemExit(f"bench model does not verify: {result.problems}")
            reads[mode] = result.hashed
        requests = len(gcs_front.calls()) / files
        what = ("Cloud Storage's stored CRC32C / MD5 (`verify: fast`)" if mode == "fast"
                else "hashing every body (`verify: deep`)")
        rows.append(f"| artifacts verify in gs://, {what}; {files} files, {total / MiB:.0f} MiB, one composite shard | "
                    f"{_spread(times[mode], 's')}; {_size(total) if reads[mode] else '0 bytes of'} bodies read; "
                    f"{requests:.2f} requests per file |")
    ratio = sorted(times["fast"])[len(times["fast"]) // 2] / sorted(times["deep"])[len(times["deep"]) // 2]
    rows.append(f"| artifacts verify in gs://, fast / deep, same run | time ratio {ratio:.3f} |")
    copied = _copy_in_child(aws_front.url, gcs_front.url)
    largest = max(f.size for f in described.files)
    throughput = total / MiB / copied["seconds"]
    rows.append(
        f"| artifacts sync Cloud Storage -> S3 (streamed, {files} files, {total / MiB:.0f} MiB), separate process | "
        f"{copied['seconds']:.2f} s, {throughput:.0f} MiB/s; worker RSS {copied['before_mib']:.0f} MiB before, "
        f"peak {copied['peak_mib']:.0f} MiB during ({copied['peak_mib'] - copied['before_mib']:.0f} MiB for the copy; "
        f"largest file {largest / MiB:.0f} MiB) |"
    )
    return rows


def _copy_in_child(aws_url: str, gcs_url: str) -> dict[str, float]:
    env = {**os.environ, **AWS_ENV, "AWS_ENDPOINT_URL": aws_url, "DRPILOT_GCS_ENDPOINT": gcs_url}
    out = subprocess.run(
        [sys.executable, "-m", "bench.stream_copy"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=900
    )
    if out.returncode != 0:
        raise SystemExit(f"copy child failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    print("\n".join([*GCS_HEADER, *bench_gcs(), "", *GCS_NOTE]))



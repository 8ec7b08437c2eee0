"""Artifacts at checkpoint scale (issue 13, 3.3): verify and sync a model of many files against
the twin's S3 (moto behind the AWS front, real boto3 over loopback HTTP).

The model: many small single-PUT files, several multipart shards (FULL_OBJECT CRC32 and
COMPOSITE SHA-256, as the AWS CLI / SDKs upload them) and one shard above the multipart-copy
threshold, a few hundred MB in all. Measured in the same run, so the ratios hold on a noisy
machine: verify with S3's stored checksums vs. hashing every body (`verify: deep`): time,
bytes read, requests per file; sync into an empty region, and again when nothing differs.

`python -m bench.artifacts` prints the table rows; `make bench` puts them in BENCHMARKS.md.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from collections import Counter
from pathlib import Path

import boto3
from drpilot_twin.aws.front import AwsFront
from drpilot_twin.aws.moto_server import AWS_ENV
from drpilot_twin.aws.s3 import file_entry, put_file, seed_s3, split_s3_uri, stream
from drpilot_twin.faults import FaultBoard

from activities.artifacts.activities import ArtifactActivities
from activities.contracts import ArtifactInput, SyncInput
from drpilot.domain.loader import load_runbook
from drpilot.domain.runbook import Runbook

ROOT = Path(__file__).resolve().parent.parent
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))
MiB = 1024 * 1024
PART = 8 * MiB  # the AWS CLI's default multipart chunk size
THRESHOLD = 64 * MiB  # multipart copy above this (production: S3's 5 GiB CopyObject limit)
MODEL = "llm-7b"


ARTIFACTS_HEADER = [
    "## Artifacts at checkpoint scale",
    "",
    "`python -m bench.artifacts` (also part of `make bench`): one model version in the twin's S3,",
    "verified and synced by `ArtifactActivities` (8 files / parts at once) outside Temporal.",
    "",
    "| what | result |",
    "| --- | --- |",
]
ARTIFACTS_NOTE = [
    "Fast verification makes one HEAD per file (plus the listing and the manifest) whatever the",
    "files' sizes, so its time stays flat as the model grows; here it is the twin's per-request",
    "cost (front + moto on loopback). Deep verification reads every byte: its time grows with",
    "the model. Sync copies server-side (CopyObject; UploadPartCopy, parts in parallel, for the",
    "shard above the threshold and to keep a composite shard's layout); the second sync copies",
    "nothing and spends its requests on HEADs (source verify, target check, target verify).",
]


def checkpoint() -> dict[str, dict]:
    """path -> put_file arguments and size: 300 MiB in 28 files."""
    files: dict[str, dict] = {f"tokenizer/vocab-{i:02d}.json": {"size": MiB, "algorithm": "SHA256"} for i in range(20)}
    files["config.json"] = {"size": 4096, "algorithm": "SHA256"}
    for i in range(1, 5):
        files[f"model-0000{i}-of-00006.safetensors"] = {
            "size": 40 * MiB, "part_size": PART, "algorithm": "CRC32", "full_object": True,
        }
    files["model-00005-of-00006.safetensors"] = {"size": 24 * MiB, "part_size": PART, "algorithm": "SHA256"}
    files["model-00006-of-00006.safetensors"] = {  # above THRESHOLD: copied part by part
        "size": 96 * MiB, "part_size": PART, "algorithm": "CRC32", "full_object": True,
    }
    return files


def _spread(values: list[float], unit: str, digits: int = 2) -> str:
    return (f"median {statistics.median(values):.{digits}f} {unit} (min {min(values):.{digits}f}, "
            f"max {max(values):.{digits}f}, n={len(values)})")


def _size(nbytes: int) -> str:
    return f"{nbytes / MiB:.1f} MiB" if nbytes >= MiB else f"{nbytes / 1024:.1f} KiB"


class Meter:
    """Requests by operation and bytes of bodies read, from botocore's own events."""

    def __init__(self, s3):
        self.calls: Counter[str] = Counter()
        self.read = 0
        s3.meta.events.register("before-call.s3.*", self._call)
        s3.meta.events.register("after-call.s3.GetObject", self._got)

    def _call(self, model, **_):
        self.calls[model.name] += 1

    def _got(self, parsed, **_):
        self.read += int(parsed.get("ContentLength", 0) or 0)

    def reset(self) -> None:
        self.calls.clear()
        self.read = 0


def _with_verify(runbook: Runbook, verify: str) -> Runbook:
    models = [m.model_copy(update={"verify": verify}) if m.name == MODEL else m for m in runbook.spec.models]
    return runbook.model_copy(update={"spec": runbook.spec.model_copy(update={"models": models})})


def _upload(s3, runbook: Runbook, files: dict[str, dict]) -> tuple[str, str]:
    model = next(m for m in runbook.spec.models if m.name == MODEL)
    bucket, prefix = split_s3_uri(model.artifacts["us-west-2"])
    entries = []
    for path, spec in files.items():
        args = {k: v for k, v in spec.items() if k != "size"}
        body = stream(f"bench/{path}", spec["size"])
        put_file(s3, bucket, prefix + path, body, **args)
        entries.append(file_entry(path, body, **args))
    document = {"model": MODEL, "version": model.version, "files": entries}
    s3.put_object(Bucket=bucket, Key=prefix + model.manifest, Body=json.dumps(document).encode())
    return split_s3_uri(model.artifacts["us-east-1"])


def _empty(s3, bucket: str, prefix: str) -> None:
    for obj in s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", []):
        s3.delete_object(Bucket=bucket, Key=obj["Key"])


def bench_artifacts() -> list[str]:
    board = FaultBoard()
    front = AwsFront(board)
    front.start()
    try:
        s3 = boto3.client(
            "s3", endpoint_url=front.url, region_name=AWS_ENV["AWS_DEFAULT_REGION"],
            aws_access_key_id=AWS_ENV["AWS_ACCESS_KEY_ID"], aws_secret_access_key=AWS_ENV["AWS_SECRET_ACCESS_KEY"],
        )
        runbook = load_runbook(ROOT / "runbooks" / "llm-inference.yaml")
        seed_s3(s3, runbook, missing={"us-east-1": [f"{MODEL}/*"]})
        files = checkpoint()
        total = sum(f["size"] for f in files.values())
        east = _upload(s3, runbook, files)
        artifacts = ArtifactActivities(s3, multipart_threshold=THRESHOLD, part_bytes=PART)
        meter = Meter(s3)
        rows = []
        described = (f"{len(files)} files, {total / MiB:.0f} MiB: 6 multipart shards (FULL_OBJECT CRC32 and "
                     f"COMPOSITE SHA-256, {PART // MiB} MiB parts), one above the {THRESHOLD // MiB} MiB "
                     "multipart-copy threshold")
        times: dict[str, list[float]] = {}
        reads: dict[str, int] = {}
        requests: dict[str, float] = {}
        for mode in ("fast", "deep"):
            verify = ArtifactInput(runbook=_with_verify(runbook, mode), region="us-west-2", model=MODEL, version="2024-01-15")
            times[mode] = []
            for _ in range(ROUNDS):
                meter.reset()
                start = time.perf_counter()
                result = artifacts.verify(verify)
                times[mode].append(time.perf_counter() - start)
                if not result.ok:
                    raise SystemExit(f"bench model does not verify: {result.problems}")
            reads[mode] = meter.read
            requests[mode] = sum(meter.calls.values()) / len(files)
        ratio = statistics.median(times["fast"]) / statistics.median(times["deep"])
        for mode, what in (("fast", "S3's stored checksums (`verify: fast`)"), ("deep", "hashing every body (`verify: deep`)")):
            rows.append(f"| artifacts verify, {what}; {described} | {_spread(times[mode], 's')}; "
                        f"{_size(reads[mode])} read; {requests[mode]:.2f} requests per file |")
        rows.append(f"| artifacts verify fast / deep, same run | time ratio {ratio:.3f}; bytes read "
                    f"{_size(reads['fast'])} (the manifest) vs {_size(reads['deep'])} |")
        sync = SyncInput(runbook=runbook, model=MODEL, version="2024-01-15", source_region="us-west-2", target_region="us-east-1")
        fresh, again, calls = [], [], Counter()
        for _ in range(max(ROUNDS // 2, 1)):
            _empty(s3, *east)
            meter.reset()
            start = time.perf_counter()
            artifacts.sync(sync)
            fresh.append(time.perf_counter() - start)
            calls = Counter(meter.calls)
            meter.reset()
            start = time.perf_counter()
            second = artifacts.sync(sync)
            again.append(time.perf_counter() - start)
            if second.copied:
                raise SystemExit(f"second sync copied {second.copied}")
        shown = ", ".join(f"{op} {n}" for op, n in calls.most_common())
        rows.append(f"| artifacts sync into an empty region (same model) | {_spread(fresh, 's')}; "
                    f"{sum(calls.values()) / len(files):.2f} requests per file ({shown}) |")
        rows.append(f"| artifacts sync again, nothing differs | {_spread(again, 's')}; "
                    f"{sum(meter.calls.values()) / len(files):.2f} requests per file, 0 copies |")
        return rows
    finally:
        front.stop()


if __name__ == "__main__":
    print("\n".join([*ARTIFACTS_HEADER, *bench_artifacts(), "", *ARTIFACTS_NOTE]))

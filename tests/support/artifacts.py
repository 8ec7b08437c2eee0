"""A model in the twin's S3 as the artifact tests seed it: llm-7b at one version in each
region's bucket and the archive, or as a checkpoint of large multipart shards."""

from __future__ import annotations

import json

from drpilot_twin.aws.s3 import file_entry, put_file, stream

from drpilot.domain.runbook import Runbook

MODEL = "llm-7b"
VERSION = "2024-01-15"
WEST = ("models-usw2", "llm-7b/2024-01-15/")
EAST = ("models-use1", "llm-7b/2024-01-15/")
ARCHIVE = ("model-archive", "llm-7b/2024-01-15/")

MiB = 1024 * 1024
PART = 5 * MiB  # S3's smallest part (except the last), which moto enforces too
# A checkpoint as the AWS CLI / SDKs upload it: shards in parts, one with a FULL_OBJECT CRC,
# one with a COMPOSITE SHA-256 (checksum of the part checksums), and a small single PUT.
SHARDS = {
    "model-00001.safetensors": {"size": 11 * MiB, "part_size": PART, "algorithm": "CRC32", "full_object": True},
    "model-00002.safetensors": {"size": 11 * MiB, "part_size": PART, "algorithm": "SHA256"},
    "config.json": {"size": 700, "algorithm": "SHA256"},
}


def shard(path: str, size: int, flip: int | None = None) -> bytes:
    body = stream(f"{MODEL}/{path}", size)
    if flip is None:
        return body
    return body[:flip] + bytes([body[flip] ^ 0xFF]) + body[flip + 1 :]


def upload_checkpoint(s3, where=WEST, versioned=False) -> dict[str, bytes]:
    """Replace the region's copy of llm-7b with SHARDS (and their manifest)."""
    bucket, prefix = where
    for obj in s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", []):
        s3.delete_object(Bucket=bucket, Key=obj["Key"])
    bodies, entries = {}, []
    for path, spec in SHARDS.items():
        args = {k: v for k, v in spec.items() if k != "size"}
        bodies[path] = shard(path, spec["size"])
        put_file(s3, bucket, prefix + path, bodies[path], **args)
        entries.append(file_entry(path, bodies[path], **args))
    manifest = {"model": MODEL, "version": VERSION, "files": entries}
    s3.put_object(Bucket=bucket, Key=prefix + "manifest.json", Body=json.dumps(manifest).encode())
    return bodies


def with_model(runbook: Runbook, **changes) -> Runbook:
    """The runbook with llm-7b's model entry changed (verify="deep", ...)."""
    models = [m.model_copy(update=changes) if m.name == MODEL else m for m in runbook.spec.models]
    return runbook.model_copy(update={"spec": runbook.spec.model_copy(update={"models": models})})

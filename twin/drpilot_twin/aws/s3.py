"""The twin's model artifacts: per-region buckets with model files and a checksum manifest,
and the Glacier archive holding the same files, built from a runbook's `spec.models`.

File contents are derived from the model's name and version only, so every seeding (and
every machine) produces the same bytes and the same checksums; tests compare against them.

Storage classes: the archive's model files are GLACIER (reading them needs a restore, as
in production), while the archive's manifest is STANDARD. That is how the archive should be
laid out for real too (a lifecycle rule that transitions only the large files): the
manifest is tiny and an emergency restore must be able to plan which files to request,
and how large they are, without first waiting hours for the manifest itself.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import zlib
from dataclasses import dataclass, field
from typing import Any

import google_crc32c

from drpilot.domain.runbook import Model, Runbook

# The files of one model version: name -> size in bytes. Small, so seeding stays fast; the
# weights file is the largest, as it is in a real checkpoint.
MODEL_FILES: dict[str, int] = {
    "config.json": 0,  # size follows from its JSON content
    "tokenizer.json": 2048,
    "model.safetensors": 8192,
}

EVERYTHING = "*"  # in `missing`: leave the region without any file of the model, manifest included


def split_s3_uri(uri: str) -> tuple[str, str]:
    """s3://bucket/a/b/ -> ("bucket", "a/b/"); the prefix always ends in "/" unless empty."""
    rest = uri.removeprefix("s3://")
    bucket, _, prefix = rest.partition("/")
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    return bucket, prefix


def _stream(seed: str, size: int) -> bytes:
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(f"{seed}:{counter}".encode()).digest()
        counter += 1
    return bytes(out[:size])


def model_files(model: Model) -> dict[str, bytes]:
    """The deterministic content of each file of a model version (manifest excluded)."""
    seed = f"{model.name}@{model.version}"
    config = {
        "model": model.name,
        "version": model.version,
        "architecture": "decoder-only",
        "dtype": "bfloat16",
        "seed": hashlib.sha256(seed.encode()).hexdigest()[:16],
    }
    files: dict[str, bytes] = {}
    for name, size in MODEL_FILES.items():
        if name == "config.json":
            files[name] = json.dumps(config, indent=2, sort_keys=True).encode() + b"\n"
        elif name.endswith(".json"):
            # Printable, so a human opening it in the twin sees text.
            files[name] = _stream(f"{seed}/{name}", size).hex().encode()[:size]
        else:
            files[name] = _stream(f"{seed}/{name}", size)
    return files


def manifest_for(model: Model, files: dict[str, bytes]) -> bytes:
    """The checksum manifest: {model, version, files: [{path, size, sha256}]} as JSON. A model
    with a copy (or its archive) in Cloud Storage also records each file's CRC32C and MD5,
    what Cloud Storage keeps of every object, so one manifest confirms its copies in both
    stores without a read (S3's by their SHA256, or the CRC32C a copy into S3 asks for)."""
    in_gcs = any(uri.startswith("gs://") for uri in [*model.artifacts.values(), model.archive or ""])
    entries = []
    for path, body in sorted(files.items()):
        entry = {"path": path, "size": len(body), "sha256": hashlib.sha256(body).hexdigest()}
        if in_gcs:
            entry["crc32c"] = base64.b64encode(google_crc32c.Checksum(body).digest()).decode()
            entry["md5"] = base64.b64encode(hashlib.md5(body).digest()).decode()
        entries.append(entry)
    document = {"model": model.name, "version": model.version, "files": entries}
    return json.dumps(document, indent=2).encode() + b"\n"


@dataclass(frozen=True)
class SeededObject:
    bucket: str
    key: str
    size: int
    sha256: str  # hex
    storage_class: str  # STANDARD or GLACIER
    model: str
    version: str
    location: str  # the runbook region, or "archive"

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


@dataclass(frozen=True)
class SeededArtifacts:
    """What `seed_s3` wrote, for tests and the twin's status."""

    objects: list[SeededObject] = field(default_factory=list)
    # (location, model, path) left out because `missing` asked for it.
    skipped: list[tuple[str, str, str]] = field(default_factory=list)

    def at(self, location: str, model: str | None = None) -> list[SeededObject]:
        return [
            o
            for o in self.objects
            if o.location == location and (model is None or o.model == model)
        ]

    def find(self, location: str, model: str, path: str) -> SeededObject:
        for obj in self.at(location, model):
            if obj.key == path or obj.key.endswith("/" + path):
                return obj
        raise KeyError(f"{location}/{model}/{path} was not seeded")

    @property
    def buckets(self) -> list[str]:
        return sorted({o.bucket for o in self.objects})


def _is_missing(missing: dict[str, list[str]], region: str, model: Model, path: str) -> bool:
    wanted = missing.get(region, [])
    return any(
        entry in (EVERYTHING, path, f"{model.name}/{path}", f"{model.name}/{EVERYTHING}")
        for entry in wanted
    )


def _ensure_bucket(s3: Any, bucket: str, made: set[str]) -> None:
    if bucket in made:
        return
    with contextlib.suppress(s3.exceptions.BucketAlreadyOwnedByYou):
        s3.create_bucket(Bucket=bucket)
    made.add(bucket)


def _put(s3: Any, bucket: str, key: str, body: bytes, storage_class: str) -> None:
    extra = {"StorageClass": storage_class} if storage_class != "STANDARD" else {}
    s3.put_object(Bucket=bucket, Key=key, Body=body, ChecksumAlgorithm="SHA256", **extra)


def seed_s3(
    s3_client: Any, runbook: Runbook, *, missing: dict[str, list[str]] | None = None
) -> SeededArtifacts:
    """Create every bucket and object `runbook.spec.models` names; idempotent (PUTs overwrite).

    `missing` maps a region to file paths to leave out there: "model.safetensors" (every
    model), "llm-7b/model.safetensors" (one model), the manifest's name, or "*" (everything),
    e.g. to make a failover need an emergency restore. The archive is always complete.

    All buckets are created in the client's own AWS region: the twin has one moto server and
    runbook regions need not be AWS region names (a Cloud DNS runbook's are GCP ones).
    """
    missing = missing or {}
    unknown = set(missing) - set(runbook.regions)
    if unknown:
        raise ValueError(
            f"missing: unknown region(s) {sorted(unknown)}; regions are {sorted(runbook.regions)}"
        )
    made: set[str] = set()
    objects: list[SeededObject] = []
    skipped: list[tuple[str, str, str]] = []
    for model in runbook.spec.models:
        files = model_files(model)
        manifest = manifest_for(model, files)
        everything = {**files, model.manifest: manifest}
        places: list[tuple[str, str]] = list(model.artifacts.items())
        if model.archive:
            places.append(("archive", model.archive))
        for location, uri in places:
            if not uri.startswith("s3://"):
                continue  # Cloud Storage's: drpilot_twin.gcs seeds them
            bucket, prefix = split_s3_uri(uri)
            _ensure_bucket(s3_client, bucket, made)
            for path, body in everything.items():
                if location != "archive" and _is_missing(missing, location, model, path):
                    skipped.append((location, model.name, path))
                    continue
                archived = location == "archive" and path != model.manifest
                storage_class = "GLACIER" if archived else "STANDARD"
                _put(s3_client, bucket, prefix + path, body, storage_class)
                objects.append(
                    SeededObject(
                        bucket=bucket,
                        key=prefix + path,
                        size=len(body),
                        sha256=hashlib.sha256(body).hexdigest(),
                        storage_class=storage_class,
                        model=model.name,
                        version=model.version,
                        location=location,
                    )
                )
    if runbook.spec.drills is not None and runbook.spec.drills.evidence.startswith("s3://"):
        # Where drills keep their evidence: an empty bucket, never cleared by a reset.
        _ensure_bucket(s3_client, split_s3_uri(runbook.spec.drills.evidence)[0], made)
    return SeededArtifacts(objects=objects, skipped=skipped)


def corrupt_object(s3_client: Any, bucket: str, key: str, *, with_checksum: bool = True) -> str:
    """Overwrite an object with different bytes of the same size; return the new sha256 (hex).

    Same size on purpose: a size check alone must not be what catches it. `with_checksum`
    False stores no S3 checksum, so a verifier has to read the bytes to notice.
    """
    body = s3_client.get_object(Bucket=bucket, Key=key)["Body"].read()
    flipped = bytes(b ^ 0xFF for b in body[:64]) + body[64:] if body else b"\x00"
    extra = {"ChecksumAlgorithm": "SHA256"} if with_checksum else {}
    s3_client.put_object(Bucket=bucket, Key=key, Body=flipped, **extra)
    return hashlib.sha256(flipped).hexdigest()


def artifacts_present(s3_client: Any, runbook: Runbook, region: str) -> bool:
    """True when every model file of the region's manifests is in its bucket (names and sizes).

    A cheap readiness check for the twin's model servers (one LIST per model); the full
    checksum verification is `activities.artifacts.ArtifactActivities.verify`.
    """
    for model in runbook.spec.models:
        uri = model.artifacts.get(region)
        if uri is None or not uri.startswith("s3://"):
            continue
        bucket, prefix = split_s3_uri(uri)
        try:
            listed = s3_client.list_objects_v2(Bucket=bucket, Prefix=prefix)
        except s3_client.exceptions.NoSuchBucket:
            return False
        sizes = {o["Key"][len(prefix) :]: o["Size"] for o in listed.get("Contents", [])}
        if model.manifest not in sizes:
            return False
        body = s3_client.get_object(Bucket=bucket, Key=prefix + model.manifest)["Body"].read()
        try:
            entries = json.loads(body)["files"]
        except (ValueError, KeyError, TypeError):
            return False
        if any(sizes.get(e.get("path")) != e.get("size") for e in entries):
            return False
    return True


def put_file(
    s3_client: Any,
    bucket: str,
    key: str,
    body: bytes,
    *,
    part_size: int | None = None,
    algorithm: str = "SHA256",
    full_object: bool = False,
    storage_class: str = "STANDARD",
) -> None:
    """Upload `body` as a real checkpoint shard is: one PUT, or (`part_size`) a multipart
    upload whose checksum is FULL_OBJECT (CRC algorithms) or COMPOSITE, as the AWS CLI and
    SDKs do above their multipart threshold."""
    extra = {"StorageClass": storage_class} if storage_class != "STANDARD" else {}
    if part_size is None:
        s3_client.put_object(Bucket=bucket, Key=key, Body=body, ChecksumAlgorithm=algorithm, **extra)
        return
    kind = {"ChecksumType": "FULL_OBJECT" if full_object else "COMPOSITE"}
    upload = s3_client.create_multipart_upload(
        Bucket=bucket, Key=key, ChecksumAlgorithm=algorithm, **kind, **extra
    )["UploadId"]
    parts = []
    for number, start in enumerate(range(0, len(body), part_size), start=1):
        reply = s3_client.upload_part(
            Bucket=bucket,
            Key=key,
            UploadId=upload,
            PartNumber=number,
            Body=body[start : start + part_size],
            ChecksumAlgorithm=algorithm,
        )
        checksum = f"Checksum{algorithm}"
        parts.append({"PartNumber": number, "ETag": reply["ETag"], checksum: reply[checksum]})
    s3_client.complete_multipart_upload(
        Bucket=bucket, Key=key, UploadId=upload, MultipartUpload={"Parts": parts}
    )


def file_entry(
    path: str, body: bytes, *, part_size: int | None = None, algorithm: str = "SHA256", full_object: bool = False
) -> dict[str, Any]:
    """The manifest entry for a file `put_file` uploads with the same arguments: what S3
    will confirm without reading it (drpilot reads it in activities/artifacts/manifest.py),
    and its sha256."""
    entry: dict[str, Any] = {"path": path, "size": len(body), "sha256": hashlib.sha256(body).hexdigest()}
    if part_size is None or full_object:
        if algorithm != "SHA256":
            entry[algorithm.lower()] = part_checksums(body, len(body) or 1, algorithm)[0]
    else:
        entry["parts"] = {
            "size": part_size,
            "algorithm": algorithm,
            "checksums": part_checksums(body, part_size, algorithm),
        }
    return entry


# Computed here, not taken from drpilot's manifest code that verifies against them. CRC32C
# and CRC64NVME need awscrt, which the twin does without.
_DIGESTS = {
    "SHA256": lambda data: hashlib.sha256(data).digest(),
    "SHA1": lambda data: hashlib.sha1(data).digest(),
    "CRC32": lambda data: zlib.crc32(data).to_bytes(4, "big"),
}


def part_checksums(body: bytes, part_size: int, algorithm: str) -> list[str]:
    """What S3 reports for each part of `body` uploaded in parts of `part_size` (one part
    for a single PUT, or for a full-object CRC, whose value is the whole object's): the
    base64 of the algorithm's digest of the part's bytes, CRCs as 4 big-endian bytes. See
    "Checking object integrity" in the Amazon S3 User Guide
    (https://docs.aws.amazon.com/AmazonS3/latest/userguide/checking-object-integrity.html):
    per part, then a COMPOSITE checksum over the concatenated part digests, "-N" appended."""
    if algorithm not in _DIGESTS:
        raise ValueError(f"the twin cannot compute {algorithm}; use one of {', '.join(_DIGESTS)}")
    digest = _DIGESTS[algorithm]
    return [
        base64.b64encode(digest(body[i : i + part_size])).decode()
        for i in range(0, max(len(body), 1), part_size)
    ]


def stream(seed: str, size: int) -> bytes:
    """Deterministic bytes, e.g. for a large model file a test uploads with `put_file`."""
    return _stream(seed, size)

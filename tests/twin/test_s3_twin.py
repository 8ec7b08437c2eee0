"""The twin's S3: what seed_s3 builds is visible, exactly, through plain boto3."""

from __future__ import annotations

import base64
import hashlib
import json

import boto3
import pytest
from botocore.exceptions import ClientError
from drpilot_twin.aws.moto_server import AWS_ENV, MotoServer
from drpilot_twin.aws.s3 import (
    MODEL_FILES,
    artifacts_present,
    corrupt_object,
    file_entry,
    manifest_for,
    model_files,
    put_file,
    seed_s3,
    split_s3_uri,
    stream,
)

from activities.artifacts.manifest import ManifestEntry
from drpilot.domain.loader import load_runbook

FILES = sorted([*MODEL_FILES, "manifest.json"])


@pytest.fixture(scope="module")
def moto():
    server = MotoServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def s3(moto):
    moto.reset()
    return boto3.client(
        "s3",
        endpoint_url=moto.url,
        region_name=AWS_ENV["AWS_DEFAULT_REGION"],
        aws_access_key_id=AWS_ENV["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=AWS_ENV["AWS_SECRET_ACCESS_KEY"],
    )


@pytest.fixture(scope="module")
def runbook(runbook_paths):
    return load_runbook(next(p for p in runbook_paths if p.name == "llm-inference.yaml"))


def _keys(s3, bucket: str, prefix: str) -> dict[str, dict]:
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
    return {o["Key"][len(prefix) :]: o for o in listed}


def test_every_region_holds_every_model_with_checksums_s3_itself_reports(s3, runbook):
    seeded = seed_s3(s3, runbook)
    for model in runbook.spec.models:
        expected = {**model_files(model), model.manifest: manifest_for(model, model_files(model))}
        for region, uri in model.artifacts.items():
            bucket, prefix = split_s3_uri(uri)
            assert sorted(_keys(s3, bucket, prefix)) == FILES
            for path, body in expected.items():
                head = s3.head_object(Bucket=bucket, Key=prefix + path, ChecksumMode="ENABLED")
                sha = hashlib.sha256(body).digest()
                assert head["ContentLength"] == len(body)
                assert head["ChecksumSHA256"] == base64.b64encode(sha).decode()
                assert head.get("StorageClass", "STANDARD") == "STANDARD"
                got = s3.get_object(Bucket=bucket, Key=prefix + path)["Body"].read()
                assert got == body
                assert seeded.find(region, model.name, path).sha256 == sha.hex()


def test_manifest_lists_path_size_and_sha256_of_each_file(s3, runbook):
    seed_s3(s3, runbook)
    model = runbook.spec.models[0]
    bucket, prefix = split_s3_uri(model.artifacts["us-west-2"])
    manifest = json.loads(s3.get_object(Bucket=bucket, Key=prefix + model.manifest)["Body"].read())
    assert manifest["model"] == model.name and manifest["version"] == model.version
    assert sorted(e["path"] for e in manifest["files"]) == sorted(MODEL_FILES)
    for entry in manifest["files"]:
        body = s3.get_object(Bucket=bucket, Key=prefix + entry["path"])["Body"].read()
        assert entry["size"] == len(body) > 0
        assert entry["sha256"] == hashlib.sha256(body).hexdigest()


def test_archive_files_are_glacier_and_unreadable_until_restored(s3, runbook):
    seed_s3(s3, runbook)
    model = runbook.spec.models[0]
    bucket, prefix = split_s3_uri(model.archive)
    listed = _keys(s3, bucket, prefix)
    assert sorted(listed) == FILES
    for path in MODEL_FILES:
        assert listed[path]["StorageClass"] == "GLACIER"
        assert s3.head_object(Bucket=bucket, Key=prefix + path)["StorageClass"] == "GLACIER"
        with pytest.raises(ClientError) as caught:
            s3.get_object(Bucket=bucket, Key=prefix + path)
        assert caught.value.response["Error"]["Code"] == "InvalidObjectState"
    # The manifest stays STANDARD so a restore can be planned without waiting for Glacier.
    assert listed[model.manifest]["StorageClass"] == "STANDARD"
    manifest = json.loads(s3.get_object(Bucket=bucket, Key=prefix + model.manifest)["Body"].read())
    assert len(manifest["files"]) == len(MODEL_FILES)


def test_archive_restore_makes_a_file_readable(s3, runbook):
    seed_s3(s3, runbook)
    model = runbook.spec.models[0]
    bucket, prefix = split_s3_uri(model.archive)
    key = prefix + "model.safetensors"
    s3.restore_object(Bucket=bucket, Key=key, RestoreRequest={"Days": 1})
    assert 'ongoing-request="false"' in s3.head_object(Bucket=bucket, Key=key)["Restore"]
    assert (
        s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        == model_files(model)["model.safetensors"]
    )


def test_content_is_deterministic_and_differs_per_model(s3, runbook):
    first = seed_s3(s3, runbook)
    again = seed_s3(s3, runbook)  # idempotent: same objects, same checksums
    assert [(o.key, o.sha256) for o in first.objects] == [(o.key, o.sha256) for o in again.objects]
    a, b = runbook.spec.models[:2]
    assert model_files(a)["model.safetensors"] != model_files(b)["model.safetensors"]
    assert model_files(a) == model_files(a.model_copy())


def test_missing_leaves_chosen_files_out_of_one_region_only(s3, runbook):
    seeded = seed_s3(
        s3,
        runbook,
        missing={"us-west-2": ["llm-7b/model.safetensors", "tokenizer.json"]},
    )
    llm, embed = runbook.spec.models[:2]
    west_llm = _keys(s3, *split_s3_uri(llm.artifacts["us-west-2"]))
    west_embed = _keys(s3, *split_s3_uri(embed.artifacts["us-west-2"]))
    assert sorted(west_llm) == ["config.json", "manifest.json"]
    assert sorted(west_embed) == ["config.json", "manifest.json", "model.safetensors"]
    assert sorted(_keys(s3, *split_s3_uri(llm.artifacts["us-east-1"]))) == FILES
    assert sorted(_keys(s3, *split_s3_uri(llm.archive))) == FILES
    assert ("us-west-2", "llm-7b", "model.safetensors") in seeded.skipped
    assert len(seeded.skipped) == 3


def test_missing_everything_leaves_the_prefix_empty(s3, runbook):
    seed_s3(s3, runbook, missing={"us-west-2": ["*"]})
    for model in runbook.spec.models:
        assert _keys(s3, *split_s3_uri(model.artifacts["us-west-2"])) == {}
    with pytest.raises(ValueError, match="unknown region"):
        seed_s3(s3, runbook, missing={"eu-west-9": ["*"]})


def test_corrupt_object_keeps_size_and_changes_the_checksum(s3, runbook):
    seeded = seed_s3(s3, runbook)
    obj = seeded.find("us-west-2", "llm-7b", "model.safetensors")
    new_sha = corrupt_object(s3, obj.bucket, obj.key)
    head = s3.head_object(Bucket=obj.bucket, Key=obj.key, ChecksumMode="ENABLED")
    assert new_sha != obj.sha256
    assert head["ContentLength"] == obj.size
    assert base64.b64decode(head["ChecksumSHA256"]).hex() == new_sha
    # Without a stored SHA-256 only reading the bytes can tell.
    corrupt_object(s3, obj.bucket, obj.key, with_checksum=False)
    head = s3.head_object(Bucket=obj.bucket, Key=obj.key, ChecksumMode="ENABLED")
    assert "ChecksumSHA256" not in head


def test_artifacts_present_follows_the_manifest(s3, runbook):
    seed_s3(s3, runbook, missing={"us-west-2": ["embed-small/model.safetensors"]})
    assert artifacts_present(s3, runbook, "us-east-1")
    assert not artifacts_present(s3, runbook, "us-west-2")
    s3.delete_object(Bucket="models-use1", Key="llm-7b/2024-01-15/manifest.json")
    assert not artifacts_present(s3, runbook, "us-east-1")


def test_three_region_runbook_seeds_every_region(s3, runbook_paths, tmp_path):
    # The three-region example keeps its models in Cloud Storage (tests/twin/test_gcs_twin.py
    # seeds it there); the same runbook with S3 buckets instead.
    example = next(p for p in runbook_paths if "clouddns" in p.name)
    (tmp_path / "s3.yaml").write_text(example.read_text().replace("gs://", "s3://"))
    runbook = load_runbook(tmp_path / "s3.yaml")
    seeded = seed_s3(s3, runbook)
    for model in runbook.spec.models:
        for region in runbook.regions:
            assert len(seeded.at(region, model.name)) == len(FILES)
            assert artifacts_present(s3, runbook, region)
    names = {b["Name"] for b in s3.list_buckets()["Buckets"]}
    assert set(seeded.buckets) == names


@pytest.mark.parametrize(
    ("algorithm", "full_object"),
    [("CRC32", True), ("SHA256", False), ("CRC32", False)],
    ids=["full-object-crc32", "composite-sha256", "composite-crc32"],
)
def test_put_file_in_parts_gets_the_checksums_file_entry_records(s3, algorithm, full_object):
    """What the manifest helper computes is what S3 (moto) reports for the same upload, so a
    checkpoint the tests build verifies from metadata exactly as a real one would."""
    s3.create_bucket(Bucket="shards")
    part = 5 * 1024 * 1024
    body = stream("shard", 2 * part + 1234)
    put_file(s3, "shards", "m.safetensors", body, part_size=part, algorithm=algorithm, full_object=full_object)
    entry = file_entry("m.safetensors", body, part_size=part, algorithm=algorithm, full_object=full_object)
    head = s3.head_object(Bucket="shards", Key="m.safetensors", ChecksumMode="ENABLED")
    assert head["ETag"].strip('"').endswith("-3") and head["ContentLength"] == entry["size"]
    stored = head[f"Checksum{algorithm}"]
    if full_object:
        assert head["ChecksumType"] == "FULL_OBJECT" and stored == entry[algorithm.lower()]
    else:
        assert head["ChecksumType"] == "COMPOSITE" and len(entry["parts"]["checksums"]) == 3
        assert stored.split("-")[0] == ManifestEntry.model_validate(entry).parts.composite()
    assert entry["sha256"] == hashlib.sha256(s3.get_object(Bucket="shards", Key="m.safetensors")["Body"].read()).hexdigest()

"""The twin's Cloud Storage: fake-gcs-server as a child process behind the front, seeded with
the Cloud DNS example's gs:// models, seen through the plain google-cloud-storage client."""

from __future__ import annotations

import base64
import hashlib
import json

import google_crc32c
import pytest
from drpilot_twin.aws.s3 import model_files
from drpilot_twin.faults import FaultBoard
from drpilot_twin.gcs import (
    GcsFaults,
    GcsFront,
    gcs_artifacts_present,
    gcs_client,
    seed_gcs,
    split_gs_uri,
)
from google.api_core import exceptions as google_errors

from drpilot.domain.loader import load_runbook
from tests.support.paths import CLOUDDNS_RUNBOOK

MiB = 1024 * 1024


@pytest.fixture(scope="module")
def board() -> FaultBoard:
    return FaultBoard()


@pytest.fixture(scope="module")
def front(board, tmp_path_factory):
    front = GcsFront(board, tmp_path_factory.mktemp("gcs"), rewrite_page_bytes=MiB)
    front.start()
    yield front
    front.stop()


def test_every_region_and_the_archive_hold_the_models_with_the_checksums_gcs_reports(front):
    runbook = load_runbook(CLOUDDNS_RUNBOOK)
    client = gcs_client(front.url)
    seed_gcs(gcs_client(front.emulator.url), runbook)
    [model] = runbook.spec.models
    files = model_files(model)
    for location, uri in [*model.artifacts.items(), ("archive", model.archive)]:
        bucket, prefix = split_gs_uri(uri)
        listed = {b.name[len(prefix) :]: b for b in client.list_blobs(bucket, prefix=prefix)}
        assert sorted(listed) == sorted([*files, model.manifest])
        for path, body in files.items():
            blob = listed[path]
            assert blob.crc32c == base64.b64encode(google_crc32c.Checksum(body).digest()).decode()
            assert blob.md5_hash == base64.b64encode(hashlib.md5(body).digest()).decode()
            assert blob.storage_class == ("ARCHIVE" if location == "archive" else "STANDARD")
        manifest = json.loads(listed[model.manifest].download_as_bytes())
        assert {e["path"]: e["crc32c"] for e in manifest["files"]} == {p: listed[p].crc32c for p in files}
    for region in runbook.regions:
        assert gcs_artifacts_present(client, runbook, region)


def test_rewrites_of_large_objects_are_paged_with_tokens_and_unknown_tokens_refused(front):
    client = gcs_client(front.url)
    bucket = client.bucket("rewrite-pages")
    if not bucket.exists():
        client.create_bucket("rewrite-pages")
    source = bucket.blob("big")
    source.upload_from_string(b"x" * (2 * MiB + 1))
    target = bucket.blob("copy")
    token, done, total = target.rewrite(source)
    pages = [(token is not None, done, total)]
    while token is not None:
        token, done, total = target.rewrite(source, token=token)
        pages.append((token is not None, done, total))
    assert pages == [(True, MiB, 2 * MiB + 1), (True, 2 * MiB, 2 * MiB + 1), (False, 2 * MiB + 1, 2 * MiB + 1)]
    target.reload()
    source.reload()
    assert (target.size, target.crc32c) == (source.size, source.crc32c)
    with pytest.raises(google_errors.BadRequest):
        bucket.blob("other").rewrite(source, token="not-a-token")


def test_a_composite_object_reports_its_component_count_and_no_md5_and_so_do_its_copies(front):
    client = gcs_client(front.url)
    bucket = client.bucket("composites")
    if not bucket.exists():
        client.create_bucket("composites")
    parts = []
    for i in range(2):
        part = bucket.blob(f"p{i}")
        part.upload_from_string(bytes([i]) * 1000)
        parts.append(part)
    composed = bucket.blob("whole")
    composed.compose(parts)
    composed.reload()
    assert (composed.component_count, composed.md5_hash) == (2, None)
    copy = bucket.blob("whole-copy")
    copy.rewrite(composed)
    copy.reload()
    assert (copy.component_count, copy.md5_hash, copy.crc32c) == (2, None, composed.crc32c)
    composed.upload_from_string(b"plain")  # overwritten by an upload: no longer composite
    composed.reload()
    assert (composed.component_count, composed.md5_hash is not None) == (None, True)


def test_the_gcs_faults_break_the_weights_file_once_each_time_they_are_set(front, board):
    runbook = load_runbook(CLOUDDNS_RUNBOOK)
    direct = gcs_client(front.emulator.url)
    seed_gcs(direct, runbook)
    front.on_request = GcsFaults(board, direct, runbook)
    try:
        [model] = runbook.spec.models
        client = gcs_client(front.url)
        bucket, prefix = split_gs_uri(model.artifacts["europe-west4"])
        weights = client.bucket(bucket).blob(prefix + "model.safetensors")
        before = client.bucket(bucket).get_blob(prefix + "model.safetensors").crc32c
        board.update(gcs_corrupt=[f"europe-west4:{model.name}"])
        weights.reload()
        assert (weights.crc32c != before, weights.size) == (True, len(model_files(model)["model.safetensors"]))
        board.update(gcs_object_missing=[f"europe-west4:{model.name}"])
        assert client.bucket(bucket).get_blob(prefix + "model.safetensors") is None
        assert not gcs_artifacts_present(client, runbook, "europe-west4")
        seed_gcs(direct, runbook)  # repaired: the faults, still set, are not applied again
        assert client.bucket(bucket).get_blob(prefix + "model.safetensors").crc32c == before
    finally:
        front.on_request = None
        board.clear()

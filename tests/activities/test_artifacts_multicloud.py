"""A runbook on both clouds (runbooks/llm-inference-multicloud.yaml): EKS + S3 in us-east-1,
GKE + Cloud Storage in us-central1, the archive in S3 Glacier. The artifacts activities are
the real ones against the twin (moto behind its AWS front, fake-gcs-server behind its Cloud
Storage front); DNS, clusters and probes are the simulated world, so the test is about what
moves between the stores."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import uuid
from concurrent.futures import ThreadPoolExecutor

import google_crc32c
import pytest
from drpilot_twin.gcs import gcs_client, split_gs_uri
from temporalio.testing import ActivityEnvironment
from temporalio.worker import Worker

from activities import contracts as c
from activities.artifacts.activities import ArtifactActivities
from drpilot.domain.loader import load_runbook
from tests.support.activities import run, run_until_killed
from tests.support.aws import aws_client
from tests.support.paths import RUNBOOKS
from tests.support.temporal import WORKFLOWS
from tests.support.twin import start_twin
from tests.support.world import World
from workflows.failback import FailbackWorkflow
from workflows.failover import FailoverWorkflow
from workflows.types import FailbackInput, FailoverInput

MULTICLOUD = RUNBOOKS / "llm-inference-multicloud.yaml"
REAL = ("artifacts_verify", "artifacts_restore", "artifacts_sync")
MiB = 1024 * 1024


@pytest.fixture
def twin(tmp_path):
    twin = start_twin(MULTICLOUD, tmp_path, traffic=False)
    yield twin
    twin.stop()


async def _run(env, world: World, artifacts: ArtifactActivities, workflow, input) -> c.Contract:
    activities = [a for a in world.activities() if a.__name__ not in REAL]
    activities += [artifacts.verify, artifacts.restore_from_archive, artifacts.sync]
    with ThreadPoolExecutor(4) as pool:
        async with Worker(
            env.client, task_queue=f"wf-{uuid.uuid4()}", workflows=WORKFLOWS, activities=activities, activity_executor=pool,
        ) as worker:
            return await env.client.execute_workflow(
                workflow, input, id=f"run:{uuid.uuid4()}", task_queue=worker.task_queue
            )


async def test_fails_over_from_aws_to_gcp_and_back_repairing_each_store_from_the_other_cloud(env, twin):
    rb = load_runbook(MULTICLOUD)
    [model] = rb.spec.models
    s3 = aws_client("s3", twin.aws_url)
    gcs = gcs_client(twin.gcs_url)
    artifacts = ArtifactActivities(s3, gcs=lambda: gcs_client(twin.gcs_url))
    gcs_bucket, gcs_prefix = split_gs_uri(model.artifacts["us-central1"])
    # The standby's weights are gone: the failover restores them from S3 Glacier into
    # Cloud Storage (a streamed copy, S3 -> a resumable upload).
    gcs.bucket(gcs_bucket).blob(gcs_prefix + "model.safetensors").delete()
    world = World.normal(rb)

    over = await _run(env, world, artifacts, FailoverWorkflow.run, FailoverInput(runbook=rb, failed_region="us-east-1"))
    assert over.status == "completed", over
    assert over.final_state.dns == {"us-east-1": 0, "us-central1": 100}
    restored = gcs.bucket(gcs_bucket).get_blob(gcs_prefix + "model.safetensors")
    assert restored is not None and restored.storage_class == "STANDARD"

    # While us-east-1 was down its S3 copy lost the same file: failback syncs it from the
    # Cloud Storage region serving now (a streamed copy into an S3 upload).
    s3.delete_object(Bucket="models-use1", Key="chat-13b/2024-06-01/model.safetensors")
    back = await _run(env, world, artifacts, FailbackWorkflow.run, FailbackInput(runbook=rb, original_region="us-east-1"))
    assert back.status == "completed", back
    assert back.final_state.dns == {"us-east-1": 100, "us-central1": 0}
    sync = next(p for p in back.phases if p.name == "sync-artifacts")
    assert sync.detail == "chat-13b: 1 copied from us-central1, 3 unchanged"
    # Both copies now confirm from their stores' own checksums, no body read.
    for region in rb.regions:
        result = await _verify_now(artifacts, rb, region)
        assert (result.ok, result.hashed) == (True, 0), (region, result)


async def _verify_now(artifacts: ArtifactActivities, rb, region: str) -> c.VerifyResult:
    [model] = rb.spec.models
    return ActivityEnvironment().run(
        artifacts.verify, c.ArtifactInput(runbook=rb, region=region, model=model.name, version=model.version)
    )


def test_a_streamed_copy_into_s3_resumes_its_multipart_upload_after_a_kill(twin):
    """Cloud Storage -> S3 in 5 MiB parts: the first attempt dies after its first part is
    heartbeated (parts already in flight finish, as on a real worker's last breath); the
    retry, handed that heartbeat, continues the same upload and sends only the parts S3
    lacks: every part is sent once, one upload is ever created."""
    rb = load_runbook(MULTICLOUD)
    [model] = rb.spec.models
    s3, gcs = aws_client("s3", twin.aws_url), gcs_client(twin.gcs_url)
    gcs_bucket, gcs_prefix = split_gs_uri(model.artifacts["us-central1"])
    body = os.urandom(12 * MiB)
    weights = gcs.bucket(gcs_bucket).blob(gcs_prefix + "model.safetensors")
    weights.upload_from_string(body)
    weights.reload()
    manifest_blob = gcs.bucket(gcs_bucket).blob(gcs_prefix + model.manifest)
    manifest = json.loads(manifest_blob.download_as_bytes())
    for entry in manifest["files"]:
        if entry["path"] == "model.safetensors":
            entry.clear()
            entry.update(path="model.safetensors", size=len(body), crc32c=weights.crc32c, md5=weights.md5_hash)
    manifest_blob.upload_from_string(json.dumps(manifest))
    uploads: list[int] = []
    created: list[str] = []
    s3.meta.events.register("before-parameter-build.s3.UploadPart", lambda params, **_: uploads.append(params["PartNumber"]))
    s3.meta.events.register("before-parameter-build.s3.CreateMultipartUpload", lambda params, **_: created.append(params["Key"]))
    artifacts = ArtifactActivities(s3, gcs=lambda: gcs_client(twin.gcs_url), stream_part_bytes=5 * MiB, workers=1)
    sync = c.SyncInput(runbook=rb, source_region="us-central1", target_region="us-east-1", model=model.name, version=model.version)

    killed = run_until_killed(artifacts.sync, sync, lambda d: bool(d.get("uploads", {}).get("model.safetensors", {}).get("parts")))
    [open_upload] = s3.list_multipart_uploads(Bucket="models-use1")["Uploads"]
    # The killed attempt left it incomplete.
    assert open_upload["UploadId"] == killed["uploads"]["model.safetensors"]["upload_id"]

    result = run(artifacts.sync, sync, resume=killed)
    assert sorted(uploads) == [1, 2, 3]  # no part sent twice
    assert created == ["chat-13b/2024-06-01/model.safetensors"]  # the retry created no upload of its own
    assert result.verify.ok
    head = s3.head_object(Bucket="models-use1", Key="chat-13b/2024-06-01/model.safetensors", ChecksumMode="ENABLED")
    # The same upload was completed, as one full-object CRC32C S3 checked against the manifest's.
    assert (head["ChecksumCRC32C"], head.get("ChecksumType")) == (weights.crc32c, "FULL_OBJECT")
    assert not s3.list_multipart_uploads(Bucket="models-use1").get("Uploads")


def test_a_streamed_copy_into_cloud_storage_resumes_its_upload_session_after_a_kill(twin):
    """S3 -> Cloud Storage in 5 MiB chunks: the first attempt dies once its first chunk is
    heartbeated; the retry asks the same session how much it holds and sends the rest."""
    rb = load_runbook(MULTICLOUD)
    [model] = rb.spec.models
    s3 = aws_client("s3", twin.aws_url)
    body = os.urandom(12 * MiB)
    s3.put_object(Bucket="models-use1", Key="chat-13b/2024-06-01/model.safetensors", Body=body)
    manifest = json.loads(s3.get_object(Bucket="models-use1", Key="chat-13b/2024-06-01/" + model.manifest)["Body"].read())
    crc32c = base64.b64encode(google_crc32c.Checksum(body).digest()).decode()
    for entry in manifest["files"]:
        if entry["path"] == "model.safetensors":
            entry.clear()
            entry.update(path="model.safetensors", size=len(body), sha256=hashlib.sha256(body).hexdigest(), crc32c=crc32c)
    s3.put_object(Bucket="models-use1", Key="chat-13b/2024-06-01/" + model.manifest, Body=json.dumps(manifest).encode())
    twin.gcs.forget()
    artifacts = ArtifactActivities(s3, gcs=lambda: gcs_client(twin.gcs_url), stream_part_bytes=5 * MiB)
    sync = c.SyncInput(runbook=rb, source_region="us-east-1", target_region="us-central1", model=model.name, version=model.version)

    killed = run_until_killed(
        artifacts.sync, sync, lambda d: bool(d.get("uploads", {}).get("model.safetensors", {}).get("bytes_done"))
    )
    assert killed["uploads"]["model.safetensors"]["bytes_done"] == 5 * MiB

    result = run(artifacts.sync, sync, resume=killed)
    size = 12 * MiB
    weights = [(session, r) for session, r in twin.gcs.session_puts() if r.endswith(f"/{size}")]
    assert len({session for session, _ in weights}) == 1  # the retry opened no session of its own
    assert [r for _, r in weights] == [
        f"bytes 0-{5 * MiB - 1}/{size}",  # the killed attempt
        f"bytes */{size}",  # the retry asks how far the session got
        f"bytes {5 * MiB}-{10 * MiB - 1}/{size}",
        f"bytes {10 * MiB}-{size - 1}/{size}",
    ]
    assert result.verify.ok and result.verify.hashed == 0

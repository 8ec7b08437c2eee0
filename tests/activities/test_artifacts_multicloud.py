"""A runbook on both clouds (runbooks/llm-inference-multicloud.yaml): EKS + S3 in us-east-1,
GKE + Cloud Storage in us-central1, the archive in S3 Glacier. The artifacts activities are
the real ones against the twin (moto behind its AWS front, fake-gcs-server behind its Cloud
Storage front); DNS, clusters and probes are the simulated world, so the test is about what
moves between the stores."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from drpilot_twin.gcs import gcs_client, split_gs_uri
from temporalio.worker import Worker

from activities import contracts as c
from activities.artifacts.activities import ArtifactActivities
from drpilot.domain.loader import load_runbook
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
    from temporalio.testing import ActivityEnvironment

    [model] = rb.spec.models
    return ActivityEnvironment().run(
        artifacts.verify, c.ArtifactInput(runbook=rb, region=region, model=model.name, version=model.version)
    )

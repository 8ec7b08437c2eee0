"""Model artifacts in Cloud Storage (gs://): the real google-cloud-storage client against
fake-gcs-server, a child process behind the twin's front (rewrites paged at 1 MiB, composite
objects reported as Cloud Storage does). The front logs every object body it serves, so
"without a body read" is what it saw, not what drpilot says of itself."""

from __future__ import annotations

import base64
import json
import os
import uuid
from concurrent.futures import ThreadPoolExecutor

import google_crc32c
import pytest
from drpilot_twin.gcs import GcsFaults, corrupt_blob, gcs_client, seed_gcs
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment
from temporalio.worker import Worker

from activities import contracts as c
from activities.artifacts.activities import ArtifactActivities
from activities.artifacts.objects import Location
from drpilot.domain.loader import load_runbook
from drpilot.domain.runbook import Runbook
from tests.support.activities import run, run_until_killed
from tests.support.paths import CLOUDDNS_RUNBOOK, RUNBOOKS
from tests.support.temporal import WORKFLOWS
from tests.support.world import World
from workflows.failover import FailoverWorkflow
from workflows.types import FailoverInput

MiB = 1024 * 1024


def _runbook(**model_changes) -> Runbook:
    """The Cloud DNS example (models in gs://) under prefixes of this test's own."""
    rb = load_runbook(CLOUDDNS_RUNBOOK)
    tag = uuid.uuid4().hex[:8]
    model = rb.spec.models[0]
    artifacts = {r: uri.replace("/llama-8b-instruct/", f"/{tag}/llama-8b-instruct/") for r, uri in model.artifacts.items()}
    archive = model.archive.replace("/llama-8b-instruct/", f"/{tag}/llama-8b-instruct/") if model.archive else None
    model = model.model_copy(update={"artifacts": artifacts, "archive": archive, **model_changes})
    return rb.model_copy(update={"spec": rb.spec.model_copy(update={"models": [model]})})


def _artifacts(gcs, **options) -> ArtifactActivities:
    # No S3 client: a gs://-only runbook never builds one.
    return ArtifactActivities(None, gcs=lambda: gcs_client(gcs.url), **options)


def _verify(artifacts: ArtifactActivities, rb: Runbook, region: str) -> c.VerifyResult:
    model = rb.spec.models[0]
    return ActivityEnvironment().run(
        artifacts.verify, c.ArtifactInput(runbook=rb, region=region, model=model.name, version=model.version)
    )


@pytest.fixture
def seeded(gcs):
    rb = _runbook()
    seed_gcs(gcs_client(gcs.emulator.url), rb)
    gcs.forget()
    return rb


def test_every_file_passes_on_its_stored_crc32c_with_no_body_read(gcs, seeded):
    result = _verify(_artifacts(gcs), seeded, "europe-west4")
    assert (result.ok, result.files, result.hashed) == (True, 3, 0)
    manifest = seeded.spec.models[0].manifest
    assert [r for r in gcs.body_reads() if not r.endswith(manifest)] == []


def test_a_corrupted_object_is_caught_by_its_crc32c_without_a_body_read(gcs, seeded, board):
    model = seeded.spec.models[0]
    gcs.on_request = GcsFaults(board, gcs_client(gcs.emulator.url), seeded)
    board.update(gcs_corrupt=[f"europe-west4:{model.name}"])
    result = _verify(_artifacts(gcs), seeded, "europe-west4")
    assert [(p.key.rsplit("/", 1)[-1], p.problem, p.detail.split(" ")[0]) for p in result.problems] == [
        ("model.safetensors", "corrupt", "crc32c")
    ]
    assert result.hashed == 0
    assert [r for r in gcs.body_reads() if not r.endswith(model.manifest)] == []


def test_deep_mode_hashes_every_body(gcs):
    rb = _runbook(verify="deep")
    seed_gcs(gcs_client(gcs.emulator.url), rb)
    gcs.forget()
    result = _verify(_artifacts(gcs), rb, "us-central1")
    assert (result.ok, result.hashed) == (True, 3)
    assert len([r for r in gcs.body_reads() if not r.endswith(rb.spec.models[0].manifest)]) >= 3
    # A file whose stored CRC32C already contradicts the manifest needs no read to fail.
    bucket, _, name = rb.spec.models[0].artifacts["us-central1"].removeprefix("gs://").partition("/")
    corrupt_blob(gcs_client(gcs.emulator.url), f"gs://{bucket}/{name}tokenizer.json")
    result = _verify(_artifacts(gcs), rb, "us-central1")
    assert [(p.key.rsplit("/", 1)[-1], p.detail.split(" ")[0]) for p in result.problems] == [("tokenizer.json", "crc32c")]
    assert result.hashed == 2


def test_a_composite_object_has_no_md5_and_passes_on_its_crc32c(gcs):
    """compose (how gsutil and gcloud upload large files in parallel) leaves no MD5."""
    client = gcs_client(gcs.url)
    where = Location.parse(f"gs://models-composite/{uuid.uuid4().hex[:8]}/")
    bucket = client.bucket(where.bucket)
    if not bucket.exists():
        client.create_bucket(where.bucket)
    pieces = [os.urandom(MiB) for _ in range(3)]
    parts = []
    for i, piece in enumerate(pieces):
        part = bucket.blob(where.key(f"part-{i}"))
        part.upload_from_string(piece)
        parts.append(part)
    composed = bucket.blob(where.key("model.safetensors"))
    composed.compose(parts)
    for part in parts:
        part.delete()
    composed.reload()
    assert (composed.md5_hash, composed.component_count) == (None, 3)
    artifacts = _artifacts(gcs)
    described, hashed = artifacts.manifest_of(where, "manifest.json")
    [entry] = described.files
    crc = google_crc32c.Checksum(b"".join(pieces)).digest()
    assert (entry.crc32c, entry.md5, hashed) == (base64.b64encode(crc).decode(), None, 0)
    artifacts.put_manifest(where, "manifest.json", described.model_dump_json(exclude_none=True).encode())
    rb = _runbook(artifacts={"us-central1": where.uri(), "europe-west4": where.uri(), "asia-southeast1": where.uri()})
    gcs.forget()
    result = _verify(artifacts, rb, "us-central1")
    assert (result.ok, result.hashed) == (True, 0)


def test_a_missing_copy_is_restored_from_the_archive_bucket_and_the_plan_says_retrieval_is_billed(gcs, seeded, board):
    model = seeded.spec.models[0]
    gcs.on_request = GcsFaults(board, gcs_client(gcs.emulator.url), seeded)
    board.update(gcs_object_missing=[f"asia-southeast1:{model.name}"])
    artifacts = _artifacts(gcs)
    restore = c.RestoreInput(runbook=seeded, region="asia-southeast1", model=model.name, version=model.version)
    [planned] = artifacts.restore_plan(restore)
    assert (planned.path, planned.tier, planned.storage_class) == ("model.safetensors", None, "ARCHIVE")
    result = ActivityEnvironment().run(artifacts.restore_from_archive, restore)
    assert result.restored == [model.artifacts["asia-southeast1"] + "model.safetensors"]
    assert (result.tier, result.tiers, result.waits) == ("none", {}, [])  # nothing asked of a Glacier
    assert result.verify.ok
    # Rewritten server-side from the archive bucket: no body passed through the worker.
    assert [r for r in gcs.body_reads() if not r.endswith(model.manifest)] == []


def test_a_killed_rewrite_resumes_with_the_token_from_its_heartbeat(gcs):
    """The first attempt dies after the first page of a 5.5 MiB rewrite (at 1 MiB a call);
    the retry is handed that attempt's last heartbeat and continues from its token."""
    rb = _runbook()
    client = gcs_client(gcs.emulator.url)
    seed_gcs(client, rb)
    model = rb.spec.models[0]
    source = Location.parse(model.artifacts["us-central1"])
    body = os.urandom(5 * MiB + MiB // 2)
    client.bucket(source.bucket).blob(source.key("model.safetensors")).upload_from_string(body)
    manifest = json.loads(client.bucket(source.bucket).blob(source.key(model.manifest)).download_as_bytes())
    blob = client.bucket(source.bucket).get_blob(source.key("model.safetensors"))
    for entry in manifest["files"]:
        if entry["path"] == "model.safetensors":
            entry.clear()
            entry.update(path="model.safetensors", size=len(body), crc32c=blob.crc32c, md5=blob.md5_hash)
    client.bucket(source.bucket).blob(source.key(model.manifest)).upload_from_string(json.dumps(manifest))
    gcs.forget()
    artifacts = _artifacts(gcs)
    sync = c.SyncInput(runbook=rb, source_region="us-central1", target_region="europe-west4", model=model.name, version=model.version)

    killed = run_until_killed(
        artifacts.sync, sync, lambda d: any(u.get("rewrite_token") for u in d.get("uploads", {}).values())
    )
    token = killed["uploads"]["model.safetensors"]["rewrite_token"]
    assert [(call.token_in, call.done) for call in gcs.rewrite_calls()] == [(None, False)]

    result = run(artifacts.sync, sync, resume=killed)
    calls = [call for call in gcs.rewrite_calls() if call.source.endswith("model.safetensors")]
    # The retry's first call carries the killed attempt's token; no call starts over.
    assert calls[1].token_in == token
    assert [call.token_in is None for call in calls] == [True] + [False] * 5
    assert [call.done for call in calls] == [False] * 5 + [True]
    assert result.verify.ok


def test_a_bucket_that_does_not_exist_is_one_line_and_not_retried(gcs):
    rb = _runbook(artifacts={r: f"gs://no-such-bucket-{uuid.uuid4().hex[:8]}/m/" for r in ("us-central1", "europe-west4", "asia-southeast1")})
    model = rb.spec.models[0]
    with pytest.raises(ApplicationError) as caught:
        ActivityEnvironment().run(
            _artifacts(gcs).sync,
            c.SyncInput(runbook=rb, source_region="us-central1", target_region="europe-west4", model=model.name, version=model.version),
        )
    assert caught.value.non_retryable
    assert caught.value.message.startswith("Cloud Storage bucket 'no-such-bucket-")


async def test_a_gcs_copy_deleted_in_a_target_is_restored_from_the_archive_and_the_failover_completes(env, gcs, seeded, board):
    model = seeded.spec.models[0]
    rb = seeded.model_copy(update={"spec": seeded.spec.model_copy(update={"approvals": seeded.spec.approvals.model_copy(update={"failover": "never"})})})
    gcs.on_request = GcsFaults(board, gcs_client(gcs.emulator.url), rb)
    board.update(gcs_object_missing=[f"asia-southeast1:{model.name}"])
    artifacts = _artifacts(gcs)
    world = World.normal(rb)
    real = {c.ARTIFACTS_VERIFY: artifacts.verify, c.ARTIFACTS_RESTORE: artifacts.restore_from_archive}
    activities = [a for a in world.activities() if a.__name__ not in ("artifacts_verify", "artifacts_restore")]
    with ThreadPoolExecutor(4) as pool:
        async with Worker(
            env.client, task_queue=f"wf-{uuid.uuid4()}", workflows=WORKFLOWS, activities=[*activities, *real.values()],
            activity_executor=pool,
        ) as worker:
            result = await env.client.execute_workflow(
                FailoverWorkflow.run, FailoverInput(runbook=rb, failed_region="us-central1"),
                id=f"failover:{rb.name}:{uuid.uuid4()}", task_queue=worker.task_queue,
            )
    assert result.status == "completed", result
    assert _verify(artifacts, rb, "asia-southeast1").ok
    assert [(call.source.split("/")[0], call.destination.split("/")[0], call.done) for call in gcs.rewrite_calls()] == [
        ("model-archive-gcp", "models-ase1", True)
    ]


def test_drill_evidence_is_written_to_and_read_back_from_cloud_storage(gcs):
    from activities.artifacts.stores import build_stores
    from activities.drills import DrillActivities
    from drpilot.domain.settings import Settings
    from drpilot.frontdoor.drills import read_history

    rb = load_runbook(RUNBOOKS / "llm-inference.yaml")
    evidence = f"gs://dr-evidence-gcs/{uuid.uuid4().hex[:8]}/"
    rb = rb.model_copy(update={"spec": rb.spec.model_copy(update={"drills": rb.spec.drills.model_copy(update={"evidence": evidence})})})
    client = gcs_client(gcs.url)
    if not client.bucket("dr-evidence-gcs").exists():
        client.create_bucket("dr-evidence-gcs")
    drills = DrillActivities(None, Settings(), gcs=lambda: gcs_client(gcs.url))
    pack = {"drill_id": "drill:x", "runbook": rb.name, "mode": "rehearsal", "from_region": "us-east-1",
            "status": "completed", "objective_rto_seconds": 300, "started_at": "2026-12-07T00:00:00Z"}
    written = ActivityEnvironment().run(
        drills.write_evidence, c.EvidenceInput(runbook=rb, name=f"{rb.name}/2026-12-07.json", body=json.dumps(pack))
    )
    assert written.uri == f"{evidence}{rb.name}/2026-12-07.json"
    [past] = read_history(rb, build_stores(None, lambda: gcs_client(gcs.url)))
    assert (past.key, past.result.status) == (f"{evidence.removeprefix('gs://dr-evidence-gcs/')}{rb.name}/2026-12-07.json", "completed")


def test_artifacts_manifest_command_describes_a_gs_prefix_without_reading_a_body(gcs, seeded, monkeypatch):
    from typer.testing import CliRunner

    from drpilot.cli.main import app

    model = seeded.spec.models[0]
    where = Location.parse(model.artifacts["asia-southeast1"])
    gcs_client(gcs.emulator.url).bucket(where.bucket).blob(where.key(model.manifest)).delete()
    monkeypatch.setenv("DRPILOT_GCS_ENDPOINT", gcs.url)
    gcs.forget()
    written = CliRunner().invoke(app, ["artifacts", "manifest", where.uri(), "--model", model.name, "--version", model.version, "--write"])
    assert written.exit_code == 0, written.output
    assert gcs.body_reads() == [] and "note:" not in written.output
    result = _verify(_artifacts(gcs), seeded, "asia-southeast1")
    assert (result.ok, result.files, result.hashed) == (True, 3, 0)
    bad = CliRunner().invoke(app, ["artifacts", "manifest", "gcs://models/x/"])
    assert bad.exit_code == 2 and "gs://bucket/prefix/" in bad.output

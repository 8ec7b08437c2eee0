"""ArtifactActivities against the twin's AWS front (moto behind it, real boto3, real HTTP).

Counting is done where the effect lands: restore requests by the front's own counter,
copies by object versions in a versioned region bucket (every copy is a new version).
"""

from __future__ import annotations

import dataclasses
import json
import threading
from collections.abc import Callable
from typing import Any

import pytest
from botocore.config import Config
from drpilot_twin.aws.moto_server import AWS_ENV
from drpilot_twin.aws.s3 import MODEL_FILES, corrupt_object, put_file, seed_s3
from drpilot_twin.loopback import LoopbackServer
from temporalio.converter import DataConverter
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.artifacts.activities import ArtifactActivities
from activities.artifacts.archive import RestoreProgress
from activities.artifacts.tiers import (
    EXPEDITED_MAX_BYTES,
    STANDARD_SECONDS,
    TIER_SECONDS,
    choose_tier,
    choose_tiers,
)
from activities.contracts import ArtifactInput, RestoreInput, SyncInput
from drpilot.domain.loader import load_runbook
from tests.support.artifacts import (
    ARCHIVE,
    EAST,
    MODEL,
    PART,
    SHARDS,
    VERSION,
    WEST,
    MiB,
    shard,
    upload_checkpoint,
    with_model,
)
from tests.support.aws import SPEED, aws_client

ALL_PATHS = sorted([*MODEL_FILES, "manifest.json"])


@pytest.fixture(scope="module")
def runbook(runbook_paths):
    return load_runbook(next(p for p in runbook_paths if p.name == "llm-inference.yaml"))


@pytest.fixture
def artifacts(s3):
    return ArtifactActivities(s3)


def _seed(s3, runbook, missing=None):
    seeded = seed_s3(s3, runbook, missing=missing)
    # Versioned after seeding: from here on, every write to a region bucket is one version.
    for bucket in ("models-use1", "models-usw2"):
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    return seeded


def _writes(s3, bucket: str, prefix: str) -> dict[str, int]:
    """Object versions written per path since versioning was enabled (the seed is version null)."""
    counts: dict[str, int] = {}
    for v in s3.list_object_versions(Bucket=bucket, Prefix=prefix).get("Versions", []):
        if v["VersionId"] != "null":
            path = v["Key"][len(prefix) :]
            counts[path] = counts.get(path, 0) + 1
    return counts


def _since(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {p: n - before.get(p, 0) for p, n in after.items() if n != before.get(p, 0)}


def _restores(front, paths=ALL_PATHS) -> dict[str, int]:
    bucket, prefix = ARCHIVE
    return {p: front.restore_count(bucket, prefix + p) for p in paths}


def _verify_input(runbook, region="us-west-2"):
    return ArtifactInput(runbook=runbook, region=region, model=MODEL, version=VERSION)


def _restore_input(runbook, **changes):
    fields = {"runbook": runbook, "region": "us-west-2", "model": MODEL, "version": VERSION}
    return RestoreInput(**{**fields, "speed": SPEED, **changes})


def _uri(where, path):
    return f"s3://{where[0]}/{where[1]}{path}"


def _tiers_sent(s3) -> list[str]:
    """The Glacier tier of every RestoreObject request `s3` sends from now on, in order."""
    tiers: list[str] = []

    def record(params, **_):
        tiers.append(params["RestoreRequest"]["GlacierJobParameters"]["Tier"])

    s3.meta.events.register("provide-client-params.s3.RestoreObject", record)
    return tiers


# ------------------------------------------------------------------------------- verify
def test_verify_ok(artifacts, s3, runbook):
    seeded = _seed(s3, runbook)
    result = ActivityEnvironment().run(artifacts.verify, _verify_input(runbook))
    assert result.ok, result.problems
    assert result.files == len(MODEL_FILES)
    files = [o for o in seeded.at("us-west-2", MODEL) if not o.key.endswith("manifest.json")]
    assert result.bytes == sum(o.size for o in files)


def test_verify_reports_missing_files(artifacts, s3, runbook):
    _seed(s3, runbook, missing={"us-west-2": ["llm-7b/model.safetensors", "llm-7b/config.json"]})
    result = ActivityEnvironment().run(artifacts.verify, _verify_input(runbook))
    assert not result.ok
    assert sorted((p.key, p.problem) for p in result.problems) == [
        (_uri(WEST, "config.json"), "missing"),
        (_uri(WEST, "model.safetensors"), "missing"),
    ]
    assert ActivityEnvironment().run(artifacts.verify, _verify_input(runbook, "us-east-1")).ok


@pytest.mark.parametrize("with_checksum", [True, False], ids=["s3-checksum", "read-and-hash"])
def test_verify_reports_corrupt_files(artifacts, s3, runbook, with_checksum):
    seeded = _seed(s3, runbook)
    obj = seeded.find("us-west-2", MODEL, "tokenizer.json")
    new_sha = corrupt_object(s3, obj.bucket, obj.key, with_checksum=with_checksum)
    result = ActivityEnvironment().run(artifacts.verify, _verify_input(runbook))
    assert [(p.key, p.problem) for p in result.problems] == [(obj.uri, "corrupt")]
    assert new_sha in result.problems[0].detail and obj.sha256 in result.problems[0].detail


def test_verify_reports_a_wrong_size(artifacts, s3, runbook):
    seeded = _seed(s3, runbook)
    obj = seeded.find("us-west-2", MODEL, "model.safetensors")
    s3.put_object(Bucket=obj.bucket, Key=obj.key, Body=b"truncated")
    result = ActivityEnvironment().run(artifacts.verify, _verify_input(runbook))
    assert [(p.key, p.problem) for p in result.problems] == [(obj.uri, "corrupt")]
    assert f"size 9, manifest says {obj.size}" == result.problems[0].detail


def test_verify_reports_files_only_in_glacier_as_archived(artifacts, s3, runbook):
    seeded = _seed(s3, runbook)
    obj = seeded.find("us-west-2", MODEL, "model.safetensors")
    s3.copy_object(
        Bucket=obj.bucket,
        Key=obj.key,
        CopySource={"Bucket": obj.bucket, "Key": obj.key},
        StorageClass="GLACIER",
    )
    result = ActivityEnvironment().run(artifacts.verify, _verify_input(runbook))
    assert [(p.key, p.problem) for p in result.problems] == [(obj.uri, "archived")]
    restored = ActivityEnvironment().run(artifacts.restore_from_archive, _restore_input(runbook))
    assert restored.verify.ok and restored.restored == [obj.uri]


def test_verify_without_manifest_reports_it_missing(artifacts, s3, runbook):
    _seed(s3, runbook, missing={"us-west-2": ["llm-7b/manifest.json"]})
    result = ActivityEnvironment().run(artifacts.verify, _verify_input(runbook))
    assert [(p.key, p.problem) for p in result.problems] == [
        (_uri(WEST, "manifest.json"), "missing")
    ]
    assert result.files == 0


def test_verify_missing_bucket_is_non_retryable_and_names_it(artifacts, s3, runbook):
    # Nothing seeded: the runbook points at buckets that do not exist.
    with pytest.raises(ApplicationError) as caught:
        ActivityEnvironment().run(artifacts.verify, _verify_input(runbook))
    assert caught.value.non_retryable
    assert caught.value.type == "NoSuchBucket"
    assert "models-usw2" in caught.value.message and "Fix:" in caught.value.message


def test_unknown_model_is_non_retryable(artifacts, s3, runbook):
    bad = ArtifactInput(runbook=runbook, region="us-west-2", model="llm-70b", version=VERSION)
    with pytest.raises(ApplicationError, match="llm-70b") as caught:
        ActivityEnvironment().run(artifacts.verify, bad)
    assert caught.value.non_retryable


# ------------------------------------------------------------------------------ restore
def test_emergency_restore_brings_back_missing_and_corrupt_files(artifacts, s3, front, runbook):
    seeded = _seed(s3, runbook, missing={"us-west-2": ["llm-7b/model.safetensors"]})
    tokenizer = seeded.find("us-west-2", MODEL, "tokenizer.json")
    corrupt_object(s3, tokenizer.bucket, tokenizer.key)
    before = _writes(s3, *WEST)
    tiers = _tiers_sent(s3)
    result = ActivityEnvironment().run(artifacts.restore_from_archive, _restore_input(runbook))
    assert result.tier == "Expedited"
    assert tiers == ["Expedited", "Expedited"]  # what Glacier was asked for
    assert sorted(result.restored) == [
        _uri(WEST, "model.safetensors"),
        _uri(WEST, "tokenizer.json"),
    ]
    assert result.verify.ok
    assert _restores(front) == {
        "config.json": 0,
        "manifest.json": 0,
        "model.safetensors": 1,
        "tokenizer.json": 1,
    }
    head = s3.head_object(Bucket=WEST[0], Key=WEST[1] + "model.safetensors", ChecksumMode="ENABLED")
    assert head.get("StorageClass", "STANDARD") == "STANDARD"
    assert "ChecksumSHA256" in head
    # Untouched files were not rewritten.
    assert _since(before, _writes(s3, *WEST)) == {"model.safetensors": 1, "tokenizer.json": 1}


def test_restore_twice_is_one_restore_request_and_one_copy_per_file(artifacts, s3, front, runbook):
    _seed(s3, runbook, missing={"us-west-2": ["llm-7b/*"]})
    first = ActivityEnvironment().run(artifacts.restore_from_archive, _restore_input(runbook))
    second = ActivityEnvironment().run(artifacts.restore_from_archive, _restore_input(runbook))
    assert sorted(first.restored) == [_uri(WEST, p) for p in ALL_PATHS]
    assert second.tier == "none" and second.restored == [] and second.verify.ok
    # The archive's manifest is STANDARD: copied, never restored.
    assert _restores(front) == {p: int(p != "manifest.json") for p in ALL_PATHS}
    assert _writes(s3, *WEST) == dict.fromkeys(ALL_PATHS, 1)


def test_restore_waits_for_glacier_heartbeating_per_file_progress(
    artifacts, s3, front, board, runbook
):
    _seed(s3, runbook, missing={"us-west-2": ["llm-7b/model.safetensors", "llm-7b/config.json"]})
    board.update(glacier_delay_seconds=60)  # 0.6 s at SPEED
    env = ActivityEnvironment()
    beats: list[dict] = []
    env.on_heartbeat = lambda *details: details and beats.append(_through_temporal(details[0]))
    result = env.run(artifacts.restore_from_archive, _restore_input(runbook))
    assert result.verify.ok
    assert sorted(result.restored) == [_uri(WEST, "config.json"), _uri(WEST, "model.safetensors")]
    # Heartbeats while Glacier was still working: both requested, none restored yet.
    waiting = [b for b in beats if sorted(b["requested"]) == ["config.json", "model.safetensors"]]
    assert waiting and all(not b["copied"] for b in waiting)
    assert sorted(beats[-1]["copied"]) == ["config.json", "model.safetensors"]
    assert _restores(front, ["config.json", "model.safetensors"]) == {
        "config.json": 1,
        "model.safetensors": 1,
    }


class WorkerLost(BaseException):
    """The worker process dying mid-activity: nothing in the activity may catch it."""


def test_a_killed_restore_resumes_from_its_heartbeat_details(artifacts, s3, front, board, runbook):
    _seed(s3, runbook, missing={"us-west-2": ["llm-7b/*"]})
    board.update(glacier_delay_seconds=60)

    first, last = _dying_once(lambda progress: progress["copied"])
    with pytest.raises(WorkerLost):
        first.run(artifacts.restore_from_archive, _restore_input(runbook))
    progress = RestoreProgress.model_validate(last[0])
    done_before = list(progress.copied)
    assert len(done_before) == 1 and done_before[0] != "manifest.json"
    assert _writes(s3, *WEST) == dict.fromkeys(done_before, 1)
    restores_before = _restores(front)
    assert restores_before == {p: int(p != "manifest.json") for p in ALL_PATHS}

    # The retry, as Temporal delivers it: attempt 2 with the last heartbeat's details. A
    # bigger budget would pick Standard; the tier of the first attempt is kept instead.
    retry = ActivityEnvironment()
    retry.info = dataclasses.replace(retry.info, attempt=2, heartbeat_details=[last[0]])
    beats: list[dict] = []
    retry.on_heartbeat = lambda *details: details and beats.append(_through_temporal(details[0]))
    result = retry.run(
        artifacts.restore_from_archive,
        _restore_input(runbook, budget_seconds=2 * STANDARD_SECONDS),
    )
    assert result.verify.ok
    assert result.tier == progress.tier == "Expedited"
    # Reported as restored even though this attempt did not copy it: the details said so.
    assert sorted(result.restored) == [_uri(WEST, p) for p in ALL_PATHS]
    assert _restores(front) == restores_before  # not one restore request more
    assert _writes(s3, *WEST) == dict.fromkeys(ALL_PATHS, 1)  # every file copied exactly once
    assert beats and all(done_before[0] in b["copied"] for b in beats)


def test_a_new_run_finds_restores_already_in_progress(artifacts, s3, front, board, runbook):
    """Without heartbeat details (e.g. they were lost with the worker) nothing is asked twice:
    the archive's restore state is checked before requesting."""
    _seed(s3, runbook, missing={"us-west-2": ["llm-7b/model.safetensors"]})
    board.update(glacier_delay_seconds=60)
    lost = ActivityEnvironment()

    def die_once_requested(*details):
        if details and details[0]["requested"]:
            raise WorkerLost()

    lost.on_heartbeat = die_once_requested
    with pytest.raises(WorkerLost):
        lost.run(artifacts.restore_from_archive, _restore_input(runbook))
    result = ActivityEnvironment().run(artifacts.restore_from_archive, _restore_input(runbook))
    assert result.verify.ok and result.restored == [_uri(WEST, "model.safetensors")]
    assert _restores(front, ["model.safetensors"]) == {"model.safetensors": 1}


def test_restore_already_in_progress_is_success(artifacts, s3, front, board, runbook):
    """Someone else (an operator, another tool) asks for the same restore between the
    activity's look at the archive (not yet requested) and its own request, so that request
    is refused with RestoreAlreadyInProgress: the restore is under way, which is success."""
    _seed(s3, runbook, missing={"us-west-2": ["llm-7b/model.safetensors"]})
    board.update(glacier_delay_seconds=100)  # 1 s: still in progress at the second request
    bucket, prefix = ARCHIVE
    key = prefix + "model.safetensors"
    someone_else = aws_client("s3", front.url)  # an independent client: none of the hooks below

    def someone_else_asks_first(**_):
        if front.restore_count(bucket, key) == 0:
            someone_else.restore_object(Bucket=bucket, Key=key, RestoreRequest={"Days": 1})

    answers: list[str] = []

    def record_answer(parsed, **_):
        answers.append(parsed.get("Error", {}).get("Code", "accepted"))

    s3.meta.events.register("before-call.s3.RestoreObject", someone_else_asks_first)
    s3.meta.events.register("after-call.s3.RestoreObject", record_answer)
    result = ActivityEnvironment().run(artifacts.restore_from_archive, _restore_input(runbook))
    assert answers == ["RestoreAlreadyInProgress"]  # the activity's own request was refused
    assert result.verify.ok and result.restored == [_uri(WEST, "model.safetensors")]
    assert front.restore_count(bucket, key) == 2  # theirs and the activity's refused one


def test_cancel_while_waiting_for_glacier(artifacts, s3, front, board, runbook):
    _seed(s3, runbook, missing={"us-west-2": ["llm-7b/model.safetensors"]})
    board.update(glacier_delay_seconds=3600)  # 36 s: far longer than the test waits
    env = ActivityEnvironment()
    outcome: list[BaseException] = []

    def run():
        try:
            env.run(artifacts.restore_from_archive, _restore_input(runbook))
        except BaseException as exc:  # noqa: BLE001 - the thread reports whatever ended it
            outcome.append(exc)

    requested = threading.Event()
    env.on_heartbeat = lambda *d: requested.set() if d and d[0]["requested"] else None
    worker = threading.Thread(target=run)
    worker.start()
    assert requested.wait(10)
    env.cancel()
    worker.join(10)
    assert not worker.is_alive()
    assert type(outcome[0]).__name__ == "CancelledError"


def test_restore_of_a_whole_region_copies_the_manifest_last(artifacts, s3, board, runbook):
    _seed(s3, runbook, missing={"us-west-2": ["*"]})
    # The archive's manifest is STANDARD, readable at once, while Glacier still holds the
    # model files: only the manifest-last rule keeps it from being copied first.
    board.update(glacier_delay_seconds=60)  # 0.6 s at SPEED
    result = ActivityEnvironment().run(artifacts.restore_from_archive, _restore_input(runbook))
    assert result.verify.ok
    assert sorted(result.restored) == [_uri(WEST, p) for p in ALL_PATHS]
    assert result.restored[-1] == _uri(WEST, "manifest.json")  # in the order they were copied


def test_an_archive_whose_manifest_is_in_glacier_too(artifacts, s3, front, board, runbook):
    _seed(s3, runbook, missing={"us-west-2": ["llm-7b/*"]})
    bucket, prefix = ARCHIVE
    s3.copy_object(
        Bucket=bucket,
        Key=prefix + "manifest.json",
        CopySource={"Bucket": bucket, "Key": prefix + "manifest.json"},
        StorageClass="GLACIER",
    )
    board.update(glacier_delay_seconds=30)
    result = ActivityEnvironment().run(artifacts.restore_from_archive, _restore_input(runbook))
    assert result.verify.ok
    assert sorted(result.restored) == [_uri(WEST, p) for p in ALL_PATHS]
    assert _restores(front) == dict.fromkeys(ALL_PATHS, 1)


def test_files_missing_from_the_archive_too_are_non_retryable(artifacts, s3, front, runbook):
    _seed(s3, runbook, missing={"us-west-2": ["llm-7b/model.safetensors"]})
    s3.delete_object(Bucket=ARCHIVE[0], Key=ARCHIVE[1] + "model.safetensors")
    with pytest.raises(ApplicationError) as caught:
        ActivityEnvironment().run(artifacts.restore_from_archive, _restore_input(runbook))
    assert caught.value.non_retryable and caught.value.type == "ArtifactsNotRestorable"
    assert _uri(ARCHIVE, "model.safetensors") in caught.value.message
    assert "artifacts.sync" in caught.value.message
    assert sum(_restores(front).values()) == 0  # nothing was requested before failing


def test_an_archive_copy_that_does_not_match_is_non_retryable(artifacts, s3, front, runbook):
    _seed(s3, runbook, missing={"us-west-2": ["llm-7b/tokenizer.json"]})
    s3.put_object(
        Bucket=ARCHIVE[0],
        Key=ARCHIVE[1] + "tokenizer.json",
        Body=b"not the tokenizer",
        StorageClass="GLACIER",
        ChecksumAlgorithm="SHA256",
    )
    with pytest.raises(ApplicationError) as caught:
        ActivityEnvironment().run(artifacts.restore_from_archive, _restore_input(runbook))
    assert caught.value.non_retryable and caught.value.type == "ArtifactsStillInvalid"
    assert _uri(WEST, "tokenizer.json") in caught.value.message


def test_a_long_budget_uses_the_standard_tier(artifacts, s3, runbook):
    _seed(s3, runbook, missing={"us-west-2": ["llm-7b/config.json"]})
    tiers = _tiers_sent(s3)
    result = ActivityEnvironment().run(
        artifacts.restore_from_archive, _restore_input(runbook, budget_seconds=STANDARD_SECONDS)
    )
    assert result.tier == "Standard" and result.verify.ok
    assert tiers == ["Standard"]  # what Glacier was asked for, not only what is reported


def test_choose_tier():
    assert choose_tier(300, [10_000]) == "Expedited"
    assert choose_tier(30, [10_000]) == "Expedited"  # late, but still the fastest there is
    assert choose_tier(STANDARD_SECONDS, [10_000]) == "Standard"
    assert choose_tier(300, [EXPEDITED_MAX_BYTES + 1]) == "Standard"


def test_restore_of_a_healthy_region_does_nothing(artifacts, s3, front, runbook):
    _seed(s3, runbook)
    result = ActivityEnvironment().run(artifacts.restore_from_archive, _restore_input(runbook))
    assert (result.tier, result.restored, result.verify.ok) == ("none", [], True)
    assert sum(_restores(front).values()) == 0 and _writes(s3, *WEST) == {}


# --------------------------------------------------------------------------------- sync
def _sync_input(runbook, source="us-west-2", target="us-east-1"):
    return SyncInput(
        runbook=runbook, model=MODEL, version=VERSION, source_region=source, target_region=target
    )


def test_sync_copies_only_what_differs(artifacts, s3, runbook):
    seeded = _seed(s3, runbook, missing={"us-east-1": ["llm-7b/model.safetensors"]})
    config = seeded.find("us-east-1", MODEL, "config.json")
    corrupt_object(s3, config.bucket, config.key)
    before = _writes(s3, *EAST)
    result = ActivityEnvironment().run(artifacts.sync, _sync_input(runbook))
    assert sorted(result.copied) == [_uri(EAST, "config.json"), _uri(EAST, "model.safetensors")]
    assert result.unchanged == 2  # tokenizer.json and the manifest
    assert result.verify.ok and result.verify.region == "us-east-1"
    assert _since(before, _writes(s3, *EAST)) == {"config.json": 1, "model.safetensors": 1}
    again = ActivityEnvironment().run(artifacts.sync, _sync_input(runbook))
    assert again.copied == [] and again.unchanged == len(ALL_PATHS)
    assert _since(before, _writes(s3, *EAST)) == {"config.json": 1, "model.safetensors": 1}


def test_sync_into_an_empty_region_copies_everything_manifest_included(artifacts, s3, runbook):
    _seed(s3, runbook, missing={"us-east-1": ["*"]})
    result = ActivityEnvironment().run(artifacts.sync, _sync_input(runbook))
    assert sorted(result.copied) == [_uri(EAST, p) for p in ALL_PATHS]
    assert result.copied[-1] == _uri(EAST, "manifest.json")
    assert result.verify.ok and result.verify.files == len(MODEL_FILES)


def test_sync_refuses_a_broken_source(artifacts, s3, runbook):
    _seed(s3, runbook, missing={"us-west-2": ["llm-7b/tokenizer.json"]})
    with pytest.raises(ApplicationError) as caught:
        ActivityEnvironment().run(artifacts.sync, _sync_input(runbook))
    assert caught.value.non_retryable and caught.value.type == "SourceNotHealthy"
    assert _uri(WEST, "tokenizer.json") in caught.value.message
    assert _writes(s3, *EAST) == {}


# ------------------------------------------------------------------- error classification
class FailingS3:
    """An S3 endpoint in a bad state: every request gets the same error, as S3 sends it."""

    def __init__(self, status: int, code: str, message: str):
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<Error><Code>{code}</Code><Message>{message}</Message>"
            "<RequestId>4442587FB7D0A2F9</RequestId></Error>"
        ).encode()
        self.requests = 0

        async def app(scope, receive, send):
            self.requests += 1
            await send(
                {
                    "type": "http.response.start",
                    "status": status,
                    "headers": [(b"content-type", b"application/xml")],
                }
            )
            await send({"type": "http.response.body", "body": body})

        self.server = LoopbackServer(app, name="failing-s3", lifespan="off")


@pytest.fixture
def failing_s3(request):
    endpoint = FailingS3(*request.param)
    endpoint.server.start()
    yield endpoint
    endpoint.server.stop()


@pytest.mark.parametrize(
    ("failing_s3", "retryable", "kind"),
    [
        ((503, "SlowDown", "Please reduce your request rate."), True, "S3Unavailable"),
        ((500, "InternalError", "We encountered an internal error."), True, "S3Unavailable"),
        ((403, "AccessDenied", "Access Denied"), False, "AccessDenied"),
    ],
    indirect=["failing_s3"],
    ids=["slowdown", "internal-error", "access-denied"],
)
def test_s3_errors_are_classified(failing_s3, runbook, retryable, kind):
    # One attempt per call: botocore's own retries would only make the test slower.
    client = aws_client("s3", failing_s3.server.url, Config(retries={"max_attempts": 1, "mode": "standard"}))
    with pytest.raises(ApplicationError) as caught:
        ActivityEnvironment().run(ArtifactActivities(client).verify, _verify_input(runbook))
    assert caught.value.non_retryable is not retryable
    assert caught.value.type == kind
    assert "models-usw2" in caught.value.message
    if kind == "AccessDenied":
        assert "s3:ListBucket" in caught.value.message and "Fix:" in caught.value.message
    assert failing_s3.requests >= 1


def test_unreachable_s3_is_retryable(runbook):
    server = LoopbackServer(lambda *a: None, name="gone")
    server.start()
    url = server.url
    server.stop()  # nothing listens there any more
    client = aws_client("s3", url, Config(retries={"max_attempts": 1, "mode": "standard"}, connect_timeout=1))
    with pytest.raises(ApplicationError) as caught:
        ActivityEnvironment().run(ArtifactActivities(client).verify, _verify_input(runbook))
    assert not caught.value.non_retryable and caught.value.type == "S3Unreachable"


def test_from_settings_reads_the_endpoint_from_the_environment(front, s3, runbook, monkeypatch):
    _seed(s3, runbook)
    for name, value in {**AWS_ENV, "AWS_ENDPOINT_URL": front.url}.items():
        monkeypatch.setenv(name, value)
    from drpilot.domain.settings import load_settings

    activities = ArtifactActivities.from_settings(load_settings())
    assert [a.__name__ for a in activities.all()] == ["verify", "restore_from_archive", "sync"]
    assert ActivityEnvironment().run(activities.verify, _verify_input(runbook)).ok


def _through_temporal(details: dict) -> dict:
    """Heartbeat details as a retry receives them: through Temporal's JSON payload converter."""
    converter = DataConverter.default.payload_converter
    return converter.from_payloads(converter.to_payloads([details]))[0]


def _dying_once(done: Callable[[dict], Any]) -> tuple[ActivityEnvironment, list[dict]]:
    """An activity environment whose worker is lost right after the first heartbeat whose
    progress is `done`; the list holds that last heartbeat's details, as a retry receives them."""
    env = ActivityEnvironment()
    last: list[dict] = []

    def heartbeat(*details):
        if not details:  # a heartbeat before any progress (e.g. while verifying, before a restore is planned)
            return
        last[:] = [_through_temporal(details[0])]
        if done(last[0]):
            raise WorkerLost()

    env.on_heartbeat = heartbeat
    return env, last


def _calls(s3, operation: str) -> list[str]:
    """The key of every `operation` request `s3` sends from now on (botocore's own event)."""
    keys: list[str] = []
    s3.meta.events.register(f"before-call.s3.{operation}", lambda params, **_: keys.append(params["url_path"]))
    return keys


def _bodies_read(gets: list[str]) -> list[str]:
    return [k for k in gets if not k.endswith("/manifest.json")]


def test_a_multipart_checkpoint_verifies_without_reading_a_body(artifacts, s3, runbook):
    _seed(s3, runbook)
    upload_checkpoint(s3)
    head = s3.head_object(Bucket=WEST[0], Key=WEST[1] + "model-00002.safetensors", ChecksumMode="ENABLED")
    assert head["ETag"].strip('"').endswith("-3")  # really a 3-part upload
    gets = _calls(s3, "GetObject")
    result = ActivityEnvironment().run(artifacts.verify, _verify_input(runbook))
    assert result.ok, result.problems
    assert (result.files, result.hashed) == (len(SHARDS), 0)
    assert _bodies_read(gets) == []  # only the manifest was read
    assert result.manifest_created_at is not None


@pytest.mark.parametrize("path", ["model-00001.safetensors", "model-00002.safetensors"], ids=["full-object-crc32", "composite-sha256"])
def test_a_corrupted_part_is_caught_from_s3_metadata(artifacts, s3, runbook, path):
    _seed(s3, runbook)
    upload_checkpoint(s3)
    spec = SHARDS[path]
    args = {k: v for k, v in spec.items() if k != "size"}
    # Same size and layout, one byte changed in the second part.
    put_file(s3, WEST[0], WEST[1] + path, shard(path, spec["size"], flip=PART + 17), **args)
    gets = _calls(s3, "GetObject")
    result = ActivityEnvironment().run(artifacts.verify, _verify_input(runbook))
    assert [(p.key, p.problem) for p in result.problems] == [(_uri(WEST, path), "corrupt")]
    assert spec["algorithm"].lower() in result.problems[0].detail
    assert _bodies_read(gets) == []


def test_deep_verify_reads_every_body_and_heartbeats_per_chunk(artifacts, s3, runbook):
    _seed(s3, runbook)
    upload_checkpoint(s3)
    deep = with_model(runbook, verify="deep")
    gets = _calls(s3, "GetObject")
    env = ActivityEnvironment()
    beats: list[dict] = []
    env.on_heartbeat = lambda *details: beats.append(_through_temporal(details[0]))
    result = env.run(artifacts.verify, _verify_input(deep))
    assert result.ok and result.hashed == len(SHARDS)
    assert len(_bodies_read(gets)) == len(SHARDS)
    # 22 MiB read in 8 MiB chunks: more heartbeats than files.
    assert len(beats) > len(SHARDS) and sorted(beats[-1]["checked"]) == sorted(SHARDS)


def test_a_file_s3_has_no_checksum_for_is_hashed(artifacts, s3, runbook):
    _seed(s3, runbook)
    bodies = upload_checkpoint(s3)
    # Re-uploaded with a checksum the manifest does not record (CRC32, single PUT).
    s3.put_object(Bucket=WEST[0], Key=WEST[1] + "config.json", Body=bodies["config.json"], ChecksumAlgorithm="CRC32")
    gets = _calls(s3, "GetObject")
    result = ActivityEnvironment().run(artifacts.verify, _verify_input(runbook))
    assert result.ok and result.hashed == 1
    assert [k.rsplit("/", 1)[-1] for k in _bodies_read(gets)] == ["config.json"]


def test_a_killed_verify_resumes_from_the_files_done(artifacts, s3, runbook):
    _seed(s3, runbook)
    upload_checkpoint(s3)
    deep = with_model(runbook, verify="deep")
    first, last = _dying_once(lambda progress: progress["checked"])
    with pytest.raises(WorkerLost):
        first.run(artifacts.verify, _verify_input(deep))
    done = last[0]["checked"]
    assert 1 <= len(done) < len(SHARDS)

    retry = ActivityEnvironment()
    retry.info = dataclasses.replace(retry.info, attempt=2, heartbeat_details=[last[0]])
    gets = _calls(s3, "GetObject")
    result = retry.run(artifacts.verify, _verify_input(deep))
    assert result.ok and result.files == len(SHARDS)
    read = {k.rsplit("/", 1)[-1] for k in _bodies_read(gets)}
    assert read == set(SHARDS) - set(done)  # the files judged before are not read again


@pytest.fixture
def multipart(s3):
    """Activities that copy anything above 6 MiB part by part, in 5 MiB parts."""
    return ArtifactActivities(s3, multipart_threshold=6 * MiB, part_bytes=PART, workers=2)


def _uploads_left(s3, bucket: str) -> list[str]:
    return [u["Key"] for u in s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])]


def test_sync_copies_large_files_part_by_part_and_they_verify_without_a_read(multipart, s3, runbook):
    _seed(s3, runbook)
    upload_checkpoint(s3)
    part_copies, copies = _calls(s3, "UploadPartCopy"), _calls(s3, "CopyObject")
    result = ActivityEnvironment().run(multipart.sync, _sync_input(runbook))
    assert sorted(result.copied) == [_uri(EAST, p) for p in ALL_PATHS_OF_CHECKPOINT]
    assert result.verify.ok and result.verify.hashed == 0
    assert len(part_copies) == 3 + 3  # two 11 MiB shards in 5 MiB parts
    assert len(copies) == 2  # config.json and the manifest
    assert _uploads_left(s3, EAST[0]) == []
    head = s3.head_object(Bucket=EAST[0], Key=EAST[1] + "model-00002.safetensors", ChecksumMode="ENABLED")
    assert head["ETag"].strip('"').endswith("-3")  # the composite layout was kept
    part_copies.clear(), copies.clear()
    again = ActivityEnvironment().run(multipart.sync, _sync_input(runbook))
    assert again.copied == [] and again.unchanged == len(ALL_PATHS_OF_CHECKPOINT)
    assert part_copies == [] and copies == []


ALL_PATHS_OF_CHECKPOINT = sorted([*SHARDS, "manifest.json"])


def test_a_killed_sync_resumes_its_multipart_copy(multipart, s3, runbook):
    _seed(s3, runbook)
    upload_checkpoint(s3)
    part_copies, created = _calls(s3, "UploadPartCopy"), _calls(s3, "CreateMultipartUpload")
    first, last = _dying_once(lambda progress: any(u["parts"] for u in progress["uploads"].values()))
    with pytest.raises(WorkerLost):
        first.run(multipart.sync, _sync_input(runbook))
    (path, upload), = last[0]["uploads"].items()
    assert upload["parts"] and _uploads_left(s3, EAST[0]) == [EAST[1] + path]
    copied_before, created_before = len(part_copies), len(created)

    retry = ActivityEnvironment()
    retry.info = dataclasses.replace(retry.info, attempt=2, heartbeat_details=[last[0]])
    result = retry.run(multipart.sync, _sync_input(runbook))
    assert result.verify.ok and result.verify.hashed == 0
    assert sorted(result.copied) == [_uri(EAST, p) for p in ALL_PATHS_OF_CHECKPOINT]
    # Every part of every shard copied exactly once over both attempts; the upload the
    # heartbeat named was resumed (one upload per shard in all), none left behind.
    assert len(part_copies) == 6 and copied_before < 6
    assert len(created) == 2 and created_before == 1
    assert _uploads_left(s3, EAST[0]) == []


def test_an_abandoned_upload_is_aborted_not_leaked(multipart, s3, runbook):
    _seed(s3, runbook)
    upload_checkpoint(s3)
    # A run whose worker died before its heartbeat named this upload.
    s3.create_multipart_upload(Bucket=EAST[0], Key=EAST[1] + "model-00001.safetensors")
    result = ActivityEnvironment().run(multipart.sync, _sync_input(runbook))
    assert result.verify.ok
    assert _uploads_left(s3, EAST[0]) == []


def test_restore_copies_a_large_archived_file_part_by_part(multipart, s3, runbook):
    _seed(s3, runbook)
    bodies = upload_checkpoint(s3)
    path, spec = "model-00001.safetensors", SHARDS["model-00001.safetensors"]
    args = {k: v for k, v in spec.items() if k != "size"}
    put_file(s3, ARCHIVE[0], ARCHIVE[1] + path, bodies[path], storage_class="GLACIER", **args)
    s3.delete_object(Bucket=WEST[0], Key=WEST[1] + path)
    part_copies = _calls(s3, "UploadPartCopy")
    result = ActivityEnvironment().run(multipart.restore_from_archive, _restore_input(runbook))
    assert result.restored == [_uri(WEST, path)] and result.verify.ok
    assert result.tiers == {path: "Expedited"}
    assert len(part_copies) == 3 and _uploads_left(s3, WEST[0]) == []


def test_choose_tiers_per_object():
    small, big = 10 * MiB, EXPEDITED_MAX_BYTES + 1
    assert choose_tiers(300, {"a": small, "b": small}) == {"a": "Expedited", "b": "Expedited"}
    # A file too large for Expedited takes Standard's hours: the small ones need not hurry.
    assert choose_tiers(300, {"a": small, "big": big}) == {"a": "Standard", "big": "Standard"}
    assert choose_tiers(12 * 3600, {"a": small}) == {"a": "Bulk"}
    assert choose_tiers(6 * 3600, {"a": small, "big": big}) == {"a": "Standard", "big": "Standard"}


def test_restore_plan_says_which_files_take_how_long(artifacts, s3, runbook):
    _seed(s3, runbook, missing={"us-west-2": ["llm-7b/model.safetensors", "llm-7b/tokenizer.json"]})
    plan = artifacts.restore_plan(_restore_input(runbook))
    assert sorted((f.path, f.tier, f.seconds) for f in plan) == [
        ("model.safetensors", "Expedited", TIER_SECONDS["Expedited"]),
        ("tokenizer.json", "Expedited", TIER_SECONDS["Expedited"]),
    ]
    long = artifacts.restore_plan(_restore_input(runbook, budget_seconds=STANDARD_SECONDS))
    assert {f.tier for f in long} == {"Standard"}


def test_artifacts_manifest_command_describes_a_prefix_from_s3_metadata(front, s3, runbook, monkeypatch):
    from typer.testing import CliRunner

    from drpilot.cli.main import app

    _seed(s3, runbook)
    upload_checkpoint(s3)
    s3.delete_object(Bucket=WEST[0], Key=WEST[1] + "manifest.json")
    for name, value in {**AWS_ENV, "AWS_ENDPOINT_URL": front.url}.items():
        monkeypatch.setenv(name, value)
    printed = CliRunner().invoke(app, ["artifacts", "manifest", _uri(WEST, ""), "--model", MODEL])
    assert printed.exit_code == 0, printed.output
    files = {f["path"]: f for f in json.loads(printed.stdout)["files"]}
    assert sorted(files) == sorted(SHARDS)
    assert "crc32" in files["model-00001.safetensors"] and "sha256" in files["config.json"]
    assert "manifest.json" not in s3.list_objects_v2(Bucket=WEST[0], Prefix=WEST[1] + "manifest")

    written = CliRunner().invoke(app, ["artifacts", "manifest", _uri(WEST, ""), "--write"])
    assert written.exit_code == 0, written.output
    gets = _calls(s3, "GetObject")
    result = ActivityEnvironment().run(ArtifactActivities(s3).verify, _verify_input(runbook))
    assert result.ok and result.files == len(SHARDS), result.problems
    # moto's GetObjectAttributes returns no ObjectParts, so the composite shard was hashed
    # into the manifest and is hashed again to verify; with real S3 its parts are recorded.
    assert {k.rsplit("/", 1)[-1] for k in _bodies_read(gets)} <= {"model-00002.safetensors"}

    bad = CliRunner().invoke(app, ["artifacts", "manifest", "models-usw2/x"])
    assert bad.exit_code == 2 and "s3://" in bad.output


def test_a_composite_upload_copied_in_one_piece_verifies_by_its_full_sha256(artifacts, s3, runbook):
    """CopyObject gives the copy a full-object checksum, so a single-part object's checksum
    is never taken for a composite one (moto keeps the source's ChecksumType)."""
    _seed(s3, runbook)
    upload_checkpoint(s3)
    key = WEST[1] + "model-00002.safetensors"
    s3.copy_object(Bucket=WEST[0], Key=key + ".tmp", CopySource={"Bucket": WEST[0], "Key": key})
    s3.copy_object(Bucket=WEST[0], Key=key, CopySource={"Bucket": WEST[0], "Key": key + ".tmp"}, ChecksumAlgorithm="SHA256")
    s3.delete_object(Bucket=WEST[0], Key=key + ".tmp")
    assert "-" not in s3.head_object(Bucket=WEST[0], Key=key)["ETag"]  # one part now
    gets = _calls(s3, "GetObject")
    result = ActivityEnvironment().run(artifacts.verify, _verify_input(runbook))
    assert result.ok, result.problems
    assert _bodies_read(gets) == []


def test_sync_keeps_a_composite_files_part_layout_below_the_threshold(artifacts, s3, runbook):
    _seed(s3, runbook)
    upload_checkpoint(s3)
    part_copies = _calls(s3, "UploadPartCopy")
    result = ActivityEnvironment().run(artifacts.sync, _sync_input(runbook))  # 5 GiB threshold
    assert result.verify.ok and result.verify.hashed == 0
    assert [k.rsplit("/", 1)[-1] for k in part_copies] == ["model-00002.safetensors"] * 3
    head = s3.head_object(Bucket=EAST[0], Key=EAST[1] + "model-00002.safetensors")
    assert head["ETag"].strip('"').endswith("-3")


def test_a_resumed_sync_copies_again_what_broke_since_its_heartbeat(artifacts, s3, runbook):
    seeded = _seed(s3, runbook)
    config = seeded.find("us-east-1", MODEL, "config.json")
    corrupt_object(s3, config.bucket, config.key)
    retry = ActivityEnvironment()
    # The last attempt said it had copied config.json; it has been overwritten since.
    retry.info = dataclasses.replace(retry.info, attempt=2, heartbeat_details=[{"copied": ["config.json"]}])
    result = retry.run(artifacts.sync, _sync_input(runbook))
    assert result.verify.ok and result.copied == [_uri(EAST, "config.json")]
    assert result.unchanged == len(ALL_PATHS) - 1

"""VeleroActivities against the Kubernetes emulator's Velero: real client, real HTTPS."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from drpilot_twin.faults import FaultBoard
from drpilot_twin.kube.api import start_kube_clusters, write_kubeconfig
from kubernetes import client as k8s
from temporalio.exceptions import ApplicationError

from activities.contracts import VeleroRestoreInput
from activities.kube.clusters import KubeconfigClients
from activities.velero import VeleroActivities
from drpilot.domain.loader import load_runbook, parse_runbook
from tests.support.activities import run
from tests.support.paths import ROUTE53_RUNBOOK

RUNBOOK_PATH = ROUTE53_RUNBOOK
RUNBOOK = load_runbook(RUNBOOK_PATH)
SPEED = 60.0  # a restore takes ~0.4 s
NS = "ml-serving"
DR = "us-west-2"


@pytest.fixture
def twin(kube_clusters) -> SimpleNamespace:
    return SimpleNamespace(
        **vars(kube_clusters), activities=VeleroActivities(kube_clusters.clients),
        custom=k8s.CustomObjectsApi(kube_clusters.clients["prod-usw2"]),
    )


def restore_input(
    name: str = "failback-llm-inference-1", runbook=RUNBOOK, **changes: Any
) -> VeleroRestoreInput:
    return VeleroRestoreInput(
        runbook=runbook,
        region=DR,
        restore_name=name,
        speed=SPEED,
        timeout_seconds=changes.pop("timeout_seconds", 20.0),
        **changes,
    )


def restores(twin) -> list[dict[str, Any]]:
    return twin.custom.list_namespaced_custom_object("velero.io", "v1", "velero", "restores")[
        "items"
    ]


def test_restore_creates_what_velero_restore_create_does_and_waits_for_completed(twin):
    k8s.AppsV1Api(twin.clients["prod-usw2"]).delete_namespaced_deployment("inference-gateway", NS)
    beats: list[Any] = []
    result = run(twin.activities.restore, restore_input(), beats)
    assert (result.name, result.phase, result.created, result.errors) == (
        "failback-llm-inference-1",
        "Completed",
        True,
        0,
    )
    [restore] = restores(twin)
    assert restore["metadata"]["namespace"] == "velero"
    assert restore["spec"]["backupName"] == "ml-backup-daily"
    assert restore["spec"]["includedNamespaces"] == [NS]
    assert restore["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "drpilot"
    assert {b["phase"] for b in beats} >= {"InProgress", "Completed"}
    # Velero really restored the deployment the region had lost.
    assert twin.clusters[DR].deployment(NS, "inference-gateway") is not None


def test_running_twice_makes_one_restore(twin):
    first = run(twin.activities.restore, restore_input())
    second = run(twin.activities.restore, restore_input())
    assert first.created and not second.created
    assert second.phase == "Completed"
    assert len(restores(twin)) == 1


def test_a_retry_after_a_crash_between_create_and_wait_finds_the_same_restore(twin):
    # The first attempt created the object, then died before reporting anything.
    from activities.velero import restore_manifest

    twin.custom.create_namespaced_custom_object(
        "velero.io",
        "v1",
        "velero",
        "restores",
        restore_manifest("failback-llm-inference-1", RUNBOOK, RUNBOOK.spec.backups.velero),
    )
    result = run(twin.activities.restore, restore_input())
    assert (result.created, result.phase) == (False, "Completed")
    assert len(restores(twin)) == 1


def test_partially_failed_is_non_retryable_with_counts_and_the_describe_hint(twin):
    # An in-cluster deployment that differs from the backup is skipped with a warning.
    k8s.AppsV1Api(twin.clients["prod-usw2"]).patch_namespaced_deployment_scale(
        "inference-service", NS, {"spec": {"replicas": 2}}
    )
    twin.board.update(velero_partially_failed=[DR])
    with pytest.raises(ApplicationError) as failure:
        run(twin.activities.restore, restore_input())
    err = failure.value
    assert (
        err.non_retryable and err.type.startswith("VeleroRestore") and "PartiallyFailed" in err.type
    )
    details = err.details[0]
    assert details["name"] == "failback-llm-inference-1"
    assert details["errors"] >= 1 and details["warnings"] == 1
    assert f"{details['errors']} errors and 1 warnings" in err.message
    assert "velero restore describe failback-llm-inference-1 --details" in err.message


def test_failed_is_non_retryable_with_the_failure_reason(twin):
    twin.board.update(velero_failed=[DR])
    with pytest.raises(ApplicationError) as failure:
        run(twin.activities.restore, restore_input())
    assert failure.value.non_retryable and failure.value.type == "VeleroRestoreFailed"
    assert "failure reason: error downloading backup" in failure.value.message


def test_a_missing_backup_is_refused_before_creating_anything(twin):
    text = RUNBOOK_PATH.read_text().replace("backup: ml-backup-daily", "backup: ml-backup-gone")
    runbook = parse_runbook(text, str(RUNBOOK_PATH))
    with pytest.raises(ApplicationError) as failure:
        run(twin.activities.restore, restore_input(runbook=runbook))
    assert failure.value.non_retryable and failure.value.type == "VeleroBackupNotFound"
    assert (
        "'ml-backup-gone'" in failure.value.message
        and "spec.backups.velero.backup" in failure.value.message
    )
    assert restores(twin) == []


def test_a_name_taken_by_another_backups_restore_is_non_retryable(twin):
    twin.custom.create_namespaced_custom_object(
        "velero.io",
        "v1",
        "velero",
        "restores",
        {
            "apiVersion": "velero.io/v1",
            "kind": "Restore",
            "metadata": {"name": "failback-llm-inference-1"},
            "spec": {"backupName": "some-other-backup"},
        },
    )
    with pytest.raises(ApplicationError) as failure:
        run(twin.activities.restore, restore_input())
    assert failure.value.non_retryable and failure.value.type == "VeleroRestoreNameTaken"


def test_a_restore_still_running_at_the_timeout_is_retryable(tmp_path):
    board = FaultBoard()
    clusters = start_kube_clusters(RUNBOOK, board, speed=SPEED, velero_restore_seconds=6000)
    try:
        clients = KubeconfigClients(str(write_kubeconfig(tmp_path / "kubeconfig", clusters)))
        with pytest.raises(ApplicationError) as failure:
            run(VeleroActivities(clients).restore, restore_input(timeout_seconds=0.5))
        assert not failure.value.non_retryable and failure.value.type == "VeleroRestoreTimeout"
        assert "InProgress" in failure.value.message
    finally:
        for cluster in clusters.values():
            cluster.stop()


def test_a_region_that_is_down_is_retryable(twin):
    twin.board.update(region_down=[DR])
    with pytest.raises(ApplicationError) as failure:
        run(twin.activities.restore, restore_input())
    assert not failure.value.non_retryable and failure.value.type == "KubeUnavailable"


def test_a_runbook_without_velero_is_refused(twin):
    text = RUNBOOK_PATH.read_text()
    start = text.index("  backups:")
    end = text.index("  warmup:")
    runbook = parse_runbook(text[:start] + text[end:], str(RUNBOOK_PATH))
    with pytest.raises(ApplicationError) as failure:
        run(twin.activities.restore, restore_input(runbook=runbook))
    assert failure.value.non_retryable and failure.value.type == "VeleroNotConfigured"


# ------------------------------------------------------------------ a Schedule's latest backup
def schedule_runbook(schedule: str = "ml-nightly"):
    text = RUNBOOK_PATH.read_text().replace("backup: ml-backup-daily", f"backup: {schedule}")
    return parse_runbook(text, str(RUNBOOK_PATH))


def test_a_schedule_restores_its_newest_completed_backup(twin):
    from datetime import UTC, datetime, timedelta

    from drpilot_twin.kube.api import seed_velero_schedule

    from activities.contracts import VeleroBackupInput

    runbook = schedule_runbook()
    now = datetime.now(UTC).replace(microsecond=0)
    older, newest, failed = seed_velero_schedule(
        twin.clusters[DR], runbook.spec.backups.velero, "ml-nightly",
        # Listed out of time order; the newest by completion that is Completed wins, not a
        # later Failed one nor the one listed last.
        [(now - timedelta(days=2), "Completed"), (now - timedelta(hours=3), "Completed"),
         (now - timedelta(hours=1), "Failed")],
    )
    info = run(twin.activities.backup_to_restore, VeleroBackupInput(runbook=runbook, region=DR))
    assert (info.name, info.schedule, info.phase) == (newest, "ml-nightly", "Completed")
    assert info.completed_at == now - timedelta(hours=3)

    k8s.AppsV1Api(twin.clients["prod-usw2"]).delete_namespaced_deployment("inference-gateway", NS)
    result = run(twin.activities.restore, restore_input(runbook=runbook))
    assert (result.phase, result.created, result.backup) == ("Completed", True, newest)
    assert result.backup_completed_at == now - timedelta(hours=3)
    [restore] = restores(twin)
    # What `velero restore create --from-schedule ml-nightly` submits; Velero fills backupName.
    assert restore["spec"]["scheduleName"] == "ml-nightly" and restore["spec"]["backupName"] == newest
    assert twin.clusters[DR].deployment(NS, "inference-gateway") is not None
    # A retry finds the same Restore.
    again = run(twin.activities.restore, restore_input(runbook=runbook))
    assert (again.created, again.backup) == (False, newest) and len(restores(twin)) == 1
    assert older != newest != failed


def test_a_schedule_without_a_completed_backup_is_refused_before_creating_anything(twin):
    from datetime import UTC, datetime

    from drpilot_twin.kube.api import seed_velero_schedule

    from activities.contracts import VeleroBackupInput

    runbook = schedule_runbook()
    seed_velero_schedule(twin.clusters[DR], runbook.spec.backups.velero, "ml-nightly",
                         [(datetime.now(UTC), "PartiallyFailed")])
    for fn, arg in ((twin.activities.restore, restore_input(runbook=runbook)),
                    (twin.activities.backup_to_restore, VeleroBackupInput(runbook=runbook, region=DR))):
        with pytest.raises(ApplicationError) as failure:
            run(fn, arg)
        assert failure.value.non_retryable and failure.value.type == "VeleroBackupNotFound"
        assert "Schedule 'ml-nightly' has no Completed Backup yet" in failure.value.message
        assert "velero backup get -l velero.io/schedule-name=ml-nightly" in failure.value.message
    assert restores(twin) == []

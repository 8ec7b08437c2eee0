"""blocks.job_preflight / blocks.job_run against the twin's Kubernetes emulator and its Job
controller (twin/drpilot_twin/kube/jobs.py)."""

from __future__ import annotations

import pytest
from kubernetes import client as k8s
from temporalio.exceptions import ApplicationError

from activities.blocks.jobs import JobActivities
from activities.contracts import ErrorType, JobPreflightInput, JobRunInput
from drpilot.domain.loader import load_runbook
from tests.support.activities import run, run_until_killed
from tests.support.paths import ROUTE53_RUNBOOK

from .conftest import KUBE_SPEED

RUNBOOK = load_runbook(ROUTE53_RUNBOOK)
REGION = "us-east-1"
DRAIN = {
    "apiVersion": "batch/v1", "kind": "Job",
    "spec": {"backoffLimit": 1, "template": {"spec": {"restartPolicy": "Never", "containers": [
        {"name": "drain", "image": "registry.example.com/ops/drain:1", "command": ["drain", "--queue", "inference"]}]}}},
}


@pytest.fixture
def jobs(kube_clusters):
    return JobActivities(kube_clusters.clients, poll_seconds=1.0)


def job_input(**fields) -> JobRunInput:
    values = {"run_id": "failover-llm-inference-20261207T094500", "block": "drain-consumers", "region": REGION,
              "context": RUNBOOK.regions[REGION].kube.context, "namespace": "ml-serving", "manifest": DRAIN,
              "speed": KUBE_SPEED, **fields}
    return JobRunInput(**values)


def in_cluster(kube_clusters, kind: str) -> list[str]:
    api = kube_clusters.clients[RUNBOOK.regions[REGION].kube.context]
    if kind == "jobs":
        items = k8s.BatchV1Api(api).list_namespaced_job("ml-serving", label_selector="drpilot.io/block=drain-consumers").items
    else:
        items = k8s.CoreV1Api(api).list_namespaced_pod("ml-serving", label_selector="drpilot.io/block=drain-consumers").items
    return [i.metadata.name for i in items]


def test_the_preflight_is_a_dry_run_naming_a_missing_namespace(jobs, kube_clusters):
    fields = job_input().model_dump(include=set(JobPreflightInput.model_fields))
    ready = run(jobs.job_preflight, JobPreflightInput(**fields))
    assert (ready.reachable, ready.problems) == (True, []) and in_cluster(kube_clusters, "jobs") == []
    missing = run(jobs.job_preflight, JobPreflightInput(**{**fields, "namespace": "ingest"}))
    assert missing.reachable and "create namespace ingest there" in missing.problems[0]


def test_a_job_started_twice_is_one_job(jobs, kube_clusters):
    # The worker dies after creating the Job; the retry, resumed from that heartbeat, finds it.
    beat = run_until_killed(jobs.job_run, job_input(), lambda details: "job" in details)
    result = run(jobs.job_run, job_input(), resume=beat)
    assert result.job == beat["job"] and len(result.job) <= 63 and result.created
    assert result.log_tail[-1] == "[sandbox] done" and "drain --queue inference" in result.log_tail[0]
    # And once more from scratch (the workflow's retry after a lost result): found, not made.
    again = run(jobs.job_run, job_input())
    assert not again.created and again.job == result.job
    assert in_cluster(kube_clusters, "jobs") == [result.job] and len(in_cluster(kube_clusters, "pods")) == 1


def test_a_failing_job_fails_the_block_with_its_pods_last_log_lines(jobs, kube_clusters):
    kube_clusters.board.update(job_fails=["drain-consumers"])
    with pytest.raises(ApplicationError) as failed:
        run(jobs.job_run, job_input())
    error = failed.value
    assert error.type == ErrorType.JOB_FAILED and error.non_retryable
    assert "BackoffLimitExceeded" in str(error)
    assert "error: block drain-consumers failed: the sandbox fault job_fails=drain-consumers" in str(error)
    assert error.details[0]["log_tail"][-1].startswith("error: block drain-consumers failed")
    assert len(in_cluster(kube_clusters, "pods")) == 2  # backoffLimit 1: the first pod and one retry

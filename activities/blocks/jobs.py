"""A `kubernetes_job` block: one batch/v1 Job in a region's cluster, run to completion.

The Job's name comes from the run and the block (`drpilot-<block>-<10 hex of
sha256(run_id/block)>`: DNS-1123, at most 63 characters, as a Job's name must be), so a
retried activity creating it again gets 409 AlreadyExists and reads the one it made (its
annotation `drpilot.io/run-id` and label `drpilot.io/block` say it is this run's): never two.
The wait polls the Job's conditions (Complete / Failed), heartbeating, with its deadline kept
in the heartbeat details so a retry waits out the same one. A failed Job fails the block with
its pod's last log lines in the error (and its details); the result of a completed one keeps
them as evidence. The preflight is a server-side dry-run create: the namespace exists, drpilot
may create Jobs there and the manifest is valid, with no effect.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
import time
from collections.abc import Callable
from typing import Any

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities import contracts
from activities.contracts import (
    ErrorType,
    JobPreflight,
    JobPreflightInput,
    JobRunInput,
    JobRunResult,
)
from activities.kube.clusters import (
    MIN_POLL_SECONDS,
    REQUEST_TIMEOUT,
    ClusterActivities,
    api_errors,
    classify,
    context_client,
    monotonic_from_wall,
    pause,
    resume_details,
)
from activities.waits import PolledWait

BLOCK_LABEL = "drpilot.io/block"  # on the Job and its pods; the twin's job_fails reads it
RUN_ANNOTATION = "drpilot.io/run-id"
RBAC = "create, get on jobs (group batch), list on pods and get on pods/log in namespace {ns} (infra/kubernetes/dr-cluster/jobs-role.yaml)"


def job_name(run_id: str, block: str) -> str:
    slug = re.sub(r"[^a-z0-9-]+", "-", block.lower()).strip("-")[:40].strip("-") or "block"
    return f"drpilot-{slug}-{hashlib.sha256(f'{run_id}/{block}'.encode()).hexdigest()[:10]}"


def label_value(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text)[:63].strip("-_.")


def finished(job: dict[str, Any]) -> str:
    """"Complete", "Failed" or "" (still running), from the Job's conditions."""
    for condition in (job.get("status") or {}).get("conditions") or []:
        if condition.get("type") in ("Complete", "Failed") and condition.get("status") == "True":
            return str(condition["type"])
    return ""


class JobActivities(ClusterActivities):
    def all(self) -> list[Callable[..., Any]]:
        return [self.job_preflight, self.job_run]

    def _api(self, input: JobPreflightInput, where: str) -> k8s.ApiClient:
        return context_client(self.clients, input.context, input.region, where,
                              f"the kube context of region {input.region} in the runbook")

    # ------------------------------------------------------------------ preflight
    @activity.defn(name=contracts.BLOCKS_JOB_PREFLIGHT)
    def job_preflight(self, input: JobPreflightInput) -> JobPreflight:
        name = job_name(input.run_id, input.block)
        said = {"block": input.block, "region": input.region, "job": name}
        try:
            batch = k8s.BatchV1Api(self._api(input, "check a Job"))
            batch.create_namespaced_job(input.namespace, _manifest(input, name), dry_run="All",
                                        _preload_content=False, _request_timeout=REQUEST_TIMEOUT)
        except ApplicationError as exc:  # the context is missing or the manifest is not a Job
            return JobPreflight(**said, reachable=False, problems=[exc.message])
        except ApiException as exc:
            if exc.status == 409:  # this run made it already
                return JobPreflight(**said, reachable=True)
            return JobPreflight(**said, reachable=exc.status not in (502, 503, 504),
                                problems=[self._error(exc, input, name).message])
        except api_errors() as exc:
            return JobPreflight(**said, reachable=False, problems=[self._error(exc, input, name).message])
        return JobPreflight(**said, reachable=True)

    # ------------------------------------------------------------------ run
    @activity.defn(name=contracts.BLOCKS_JOB_RUN)
    def job_run(self, input: JobRunInput) -> JobRunResult:
        name = job_name(input.run_id, input.block)
        api = self._api(input, "run a Job")
        batch, core = k8s.BatchV1Api(api), k8s.CoreV1Api(api)
        resume = resume_details()
        job, created = self._create(batch, input, name)
        started = float(resume.get("started_at") or time.time())
        created = bool(resume.get("created", created))
        deadline = started + input.timeout_seconds / input.speed
        poll = max(MIN_POLL_SECONDS, self.poll_seconds / input.speed)
        wait = PolledWait("job", input.speed, self.poll_seconds, monotonic_from_wall(started))
        while not finished(job):
            activity.heartbeat({"started_at": started, "created": created, "job": name,
                                "active": (job.get("status") or {}).get("active", 0)})
            wait.pending()
            if time.time() >= deadline:
                pod, tail = self._tail(core, input, name)
                raise ApplicationError(
                    _said(f"block {input.block}: Job {input.namespace}/{name} in {input.region} did not complete within "
                          f"{input.timeout_seconds:g} s (simulated)", pod, tail),
                    {"job": name, "pod": pod, "log_tail": tail}, type=ErrorType.JOB_TIMEOUT, non_retryable=True,
                )
            pause(min(poll, max(0.0, deadline - time.time())))
            job = self._read(batch, input, name)
        pod, tail = self._tail(core, input, name)
        if finished(job) == "Failed":
            condition = next(c for c in job["status"]["conditions"] if c.get("type") == "Failed")
            raise ApplicationError(
                _said(f"block {input.block}: Job {input.namespace}/{name} in {input.region} failed "
                      f"({condition.get('reason', '')}: {condition.get('message', '')})", pod, tail),
                {"job": name, "pod": pod, "log_tail": tail}, type=ErrorType.JOB_FAILED, non_retryable=True,
            )
        return JobRunResult(block=input.block, region=input.region, namespace=input.namespace, job=name, created=created,
                            pod=pod, log_tail=tail, seconds=round(time.time() - started, 3), waits=wait.done())

    def _create(self, batch: k8s.BatchV1Api, input: JobRunInput, name: str) -> tuple[dict[str, Any], bool]:
        """(the Job, whether this call created it); one made earlier for this run and block is found."""
        try:
            answer = batch.create_namespaced_job(input.namespace, _manifest(input, name), _preload_content=False,
                                                 _request_timeout=REQUEST_TIMEOUT)
            return json.loads(answer.data), True
        except ApiException as exc:
            if exc.status != 409:
                raise self._error(exc, input, name) from exc
        except api_errors() as exc:
            raise self._error(exc, input, name) from exc
        job = self._read(batch, input, name)
        meta = job.get("metadata") or {}
        if (meta.get("annotations") or {}).get(RUN_ANNOTATION) != input.run_id or (
            (meta.get("labels") or {}).get(BLOCK_LABEL) != label_value(input.block)
        ):
            raise ApplicationError(
                f"block {input.block}: a Job {input.namespace}/{name} exists in {input.region} that drpilot did not "
                f"create for run {input.run_id}; delete it or rename the block",
                type=ErrorType.JOB_NAME_TAKEN, non_retryable=True,
            )
        return job, False

    def _read(self, batch: k8s.BatchV1Api, input: JobRunInput, name: str) -> dict[str, Any]:
        try:
            answer = batch.read_namespaced_job(name, input.namespace, _preload_content=False,
                                               _request_timeout=REQUEST_TIMEOUT)
        except api_errors() as exc:
            raise self._error(exc, input, name) from exc
        return json.loads(answer.data)

    def _tail(self, core: k8s.CoreV1Api, input: JobRunInput, name: str) -> tuple[str, list[str]]:
        """The Job's newest pod and its last log lines; what went wrong reading them, as the tail."""
        try:
            pods = json.loads(core.list_namespaced_pod(
                input.namespace, label_selector=f"batch.kubernetes.io/job-name={name}", _preload_content=False,
                _request_timeout=REQUEST_TIMEOUT).data).get("items") or []
            if not pods:
                return "", []
            pod = max(pods, key=lambda p: p["metadata"].get("creationTimestamp", ""))
            containers = (pod.get("spec") or {}).get("containers") or [{}]
            text = core.read_namespaced_pod_log(
                pod["metadata"]["name"], input.namespace, container=containers[0].get("name"),
                tail_lines=input.log_lines, _request_timeout=REQUEST_TIMEOUT)
        except api_errors() as exc:
            return "", [f"(the pod's logs could not be read: {type(exc).__name__}: {getattr(exc, 'reason', exc)})"]
        return pod["metadata"]["name"], [line for line in str(text).splitlines()][-input.log_lines:]

    @staticmethod
    def _error(exc: BaseException, input: JobPreflightInput, name: str) -> ApplicationError:
        return classify(exc, context=input.context, region=input.region, resource=f"Job {input.namespace}/{name}",
                        not_found_fix=f"create namespace {input.namespace} there",
                        rbac=RBAC.format(ns=input.namespace))


def _manifest(input: JobPreflightInput, name: str) -> dict[str, Any]:
    """The block's Job, named for this run and block, in its namespace, labelled as drpilot's."""
    job = copy.deepcopy(input.manifest)
    if job.get("kind", "Job") != "Job" or job.get("apiVersion", "batch/v1") != "batch/v1":
        raise ApplicationError(
            f"block {input.block}: its job is a {job.get('apiVersion')} {job.get('kind')}, not a batch/v1 Job",
            type=ErrorType.INVALID_INPUT, non_retryable=True,
        )
    job.update(apiVersion="batch/v1", kind="Job")
    meta = job.setdefault("metadata", {})
    meta.pop("generateName", None)
    meta.update(name=name, namespace=input.namespace)
    meta.setdefault("labels", {})[BLOCK_LABEL] = label_value(input.block)
    meta.setdefault("annotations", {})[RUN_ANNOTATION] = input.run_id
    template = job.setdefault("spec", {}).setdefault("template", {})
    template.setdefault("metadata", {}).setdefault("labels", {})[BLOCK_LABEL] = label_value(input.block)
    return job


def _said(what: str, pod: str, tail: list[str]) -> str:
    if not tail:
        return what + (f"; pod {pod} logged nothing" if pod else "; no pod was found")
    return what + f"; the last {len(tail)} log line(s) of pod {pod}:\n" + "\n".join(tail)

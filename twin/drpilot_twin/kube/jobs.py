"""The Job controller of the Kubernetes emulator: a batch/v1 Job runs its pod template to
completion, as kube-controller-manager's job controller and the kubelet do (Kubernetes docs,
"Jobs"), on simulated time divided by the twin's speed.

* One pod at a time (parallelism and completions 1, what a runbook's block runs), named
  JOB-xxxxx, labelled `job-name` / `batch.kubernetes.io/job-name` and owned by the Job. The
  scheduler binds it where it fits (scheduling.py); its container runs `JOB_SECONDS` and exits.
* Exit 0: the pod Succeeded, the Job's condition `Complete`. A Job whose label
  `drpilot.io/block` names a block in the fault `job_fails` exits 1 (the pod Failed, with the
  error in its log); the controller starts a new pod after the pod failure back-off (10 s,
  doubling, capped at 6 min) until more pods failed than `spec.backoffLimit` (default 6): then
  the condition `Failed`, reason BackoffLimitExceeded. `restartPolicy: OnFailure` is treated
  like Never (a new pod per attempt rather than a container restart): the counts and the
  ending are the same.
* What a container printed is kept per pod and served at pods/NAME/log (`kubectl logs`,
  read_namespaced_pod_log; tailLines honoured). The twin runs no image: a container prints
  what it was asked to run and how it ended.
* Deleting a Job deletes its pods (background propagation).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from drpilot_twin.faults import FaultBoard
from drpilot_twin.kube.controllers import random_name_suffix
from drpilot_twin.kube.objects import JOBS, PODS, Obj, Store, invalid, timestamp
from drpilot_twin.kube.scheduling import place, rooms

# Simulated seconds a Job's container runs (a drain, a flag flip, a migration step).
JOB_SECONDS = 10.0
BACKOFF_SECONDS, BACKOFF_CAP_SECONDS = 10.0, 360.0
DEFAULT_BACKOFF_LIMIT = 6
BLOCK_LABEL = "drpilot.io/block"


@dataclass
class _Attempt:
    node: str = ""
    ends_at: float = 0.0  # monotonic; 0 until bound
    started: str = ""


@dataclass
class JobController:
    store: Store
    board: FaultBoard
    speed: float = 1.0
    _owner: dict[str, str] = field(default_factory=dict)  # pod uid -> job uid
    _attempts: dict[str, _Attempt] = field(default_factory=dict)  # pod uid -> its run
    _failed_at: dict[str, float] = field(default_factory=dict)  # job uid -> when its last pod failed
    logs: dict[tuple[str, str], list[str]] = field(default_factory=dict)  # (namespace, pod) -> lines

    def reconcile(self, now: float) -> float | None:
        wake: float | None = None
        with self.store.lock:
            live = set()
            for job in self.store.items(JOBS):
                live.add(job["metadata"]["uid"])
                due = self._one(job, now)
                if due is not None:
                    wake = due if wake is None else min(wake, due)
            for pod in list(self.store.items(PODS)):
                owner = self._owner.get(pod["metadata"]["uid"])
                if owner is not None and owner not in live:
                    self.store.delete(PODS, pod["metadata"]["namespace"], pod["metadata"]["name"])
                    self._forget(pod)
        return wake

    def log(self, namespace: str, pod: str, tail: int | None = None) -> str:
        lines = self.logs.get((namespace, pod), [])
        if tail is not None:
            lines = lines[-tail:] if tail > 0 else []
        return "".join(line + "\n" for line in lines)

    # ------------------------------------------------------------------ one Job
    def _one(self, job: Obj, now: float) -> float | None:
        status = dict(job.get("status") or {})
        if any(c.get("type") in ("Complete", "Failed") and c.get("status") == "True" for c in status.get("conditions") or []):
            return None
        uid, ns = job["metadata"]["uid"], job["metadata"]["namespace"]
        pods = [p for p in self.store.items(PODS, ns) if self._owner.get(p["metadata"]["uid"]) == uid]
        wake = None
        for pod in pods:
            if pod["status"].get("phase") not in ("Succeeded", "Failed"):
                due = self._advance(job, pod, now)
                wake = due if wake is None else min(wake, due or wake)
        pods = [p for p in self.store.items(PODS, ns) if self._owner.get(p["metadata"]["uid"]) == uid]
        phases = [p["status"].get("phase") for p in pods]
        failed, succeeded = phases.count("Failed"), phases.count("Succeeded")
        active = len(pods) - failed - succeeded
        status.update(startTime=status.get("startTime") or timestamp(), active=active, failed=failed, succeeded=succeeded)
        limit = int((job.get("spec") or {}).get("backoffLimit", DEFAULT_BACKOFF_LIMIT))
        if succeeded:
            self._finish(status, "Complete", "", "")
        elif failed > limit:
            self._finish(status, "Failed", "BackoffLimitExceeded", "Job has reached the specified backoff limit")
        elif not active:
            backoff = min(BACKOFF_SECONDS * 2 ** max(failed - 1, 0), BACKOFF_CAP_SECONDS) / self.speed
            start_at = self._failed_at[uid] + backoff if failed and uid in self._failed_at else now
            if now >= start_at:
                self._create_pod(job)
                wake = now
            else:
                wake = start_at if wake is None else min(wake, start_at)
        job["status"] = {k: v for k, v in status.items() if v not in (0, None)}
        self.store.update(JOBS, job)
        return wake

    def _finish(self, status: Obj, kind: str, reason: str, message: str) -> None:
        stamp = timestamp()
        condition = {"type": kind, "status": "True", "lastProbeTime": stamp, "lastTransitionTime": stamp}
        if reason:
            condition.update(reason=reason, message=message)
        status["conditions"] = [*(status.get("conditions") or []), condition]
        if kind == "Complete":
            status["completionTime"] = stamp
        status["active"] = 0

    def _create_pod(self, job: Obj) -> None:
        meta, template = job["metadata"], (job.get("spec") or {}).get("template") or {}
        labels = {**((template.get("metadata") or {}).get("labels") or {}),
                  "job-name": meta["name"], "batch.kubernetes.io/job-name": meta["name"],
                  "batch.kubernetes.io/controller-uid": meta["uid"], "controller-uid": meta["uid"]}
        pod = {
            "metadata": {
                "name": f"{meta['name']}-{random_name_suffix()}", "namespace": meta["namespace"], "labels": labels,
                "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": meta["name"], "uid": meta["uid"],
                                     "controller": True, "blockOwnerDeletion": True}],
            },
            "spec": json.loads(json.dumps(template.get("spec") or {})),
            "status": {"phase": "Pending", "qosClass": "BestEffort"},
        }
        created = self.store.create(PODS, pod)
        self._owner[created["metadata"]["uid"]] = meta["uid"]
        self._attempts[created["metadata"]["uid"]] = _Attempt()

    # ------------------------------------------------------------------ one pod
    def _advance(self, job: Obj, pod: Obj, now: float) -> float | None:
        uid = pod["metadata"]["uid"]
        attempt = self._attempts.setdefault(uid, _Attempt())
        if not attempt.node:
            node, message = place(pod.get("spec") or {}, rooms(self.store))
            if node is None:
                pod["status"] = {"phase": "Pending", "conditions": [
                    {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message}]}
                self.store.update(PODS, pod)
                return None
            attempt.node, attempt.ends_at, attempt.started = node, now + JOB_SECONDS / self.speed, timestamp()
            pod["spec"]["nodeName"] = node
            self.logs[(pod["metadata"]["namespace"], pod["metadata"]["name"])] = [
                f"[sandbox] container {c.get('name', '')} ({c.get('image', '')}) runs: "
                + (" ".join(str(a) for a in [*(c.get("command") or []), *(c.get("args") or [])]) or "its image's entrypoint")
                for c in pod["spec"].get("containers") or []
            ]
            self._write(pod, "Running", None, attempt)
            return attempt.ends_at
        if now < attempt.ends_at:
            return attempt.ends_at
        block = (job["metadata"].get("labels") or {}).get(BLOCK_LABEL, "")
        fails = bool(block) and block in self.board.now.job_fails
        lines = self.logs.setdefault((pod["metadata"]["namespace"], pod["metadata"]["name"]), [])
        if fails:
            lines.append(f"error: block {block} failed: the sandbox fault job_fails={block} makes its Job's pods exit 1")
            self._failed_at[job["metadata"]["uid"]] = now
        else:
            lines.append("[sandbox] done")
        self._write(pod, "Failed" if fails else "Succeeded", 1 if fails else 0, attempt)
        return None

    def _write(self, pod: Obj, phase: str, exit_code: int | None, attempt: _Attempt) -> None:
        if exit_code is None:
            state: Obj = {"running": {"startedAt": attempt.started}}
        else:
            state = {"terminated": {"exitCode": exit_code, "reason": "Error" if exit_code else "Completed",
                                    "startedAt": attempt.started, "finishedAt": timestamp()}}
        pod["status"] = {
            "phase": phase, "qosClass": "BestEffort", "hostIP": "10.0.0.1", "startTime": attempt.started,
            "conditions": [{"type": "PodScheduled", "status": "True"},
                           {"type": "Ready", "status": str(exit_code is None),
                            **({} if exit_code is None else {"reason": "PodCompleted"})}],
            "containerStatuses": [{"name": c.get("name", ""), "image": c.get("image", ""), "ready": exit_code is None,
                                   "imageID": f"{c.get('image', '')}@sha256:{'0' * 64}",
                                   "restartCount": 0, "started": exit_code is None, "state": state}
                                  for c in pod["spec"].get("containers") or []],
        }
        self.store.update(PODS, pod)

    def _forget(self, pod: Obj) -> None:
        uid = pod["metadata"]["uid"]
        self._owner.pop(uid, None)
        self._attempts.pop(uid, None)
        self.logs.pop((pod["metadata"]["namespace"], pod["metadata"]["name"]), None)


def prepare_job(job: Obj) -> None:
    """The API server's defaulting and validation of a new Job (batch/v1)."""
    name = job["metadata"].get("name", "")
    spec = job.setdefault("spec", {})
    causes = []
    if len(name) > 63:  # the Job's name becomes a label value of its pods
        causes.append(("metadata.name", f'Invalid value: "{name}": must be no more than 63 characters'))
    template = spec.get("template") or {}
    pod_spec = template.get("spec") or {}
    if not pod_spec.get("containers"):
        causes.append(("spec.template.spec.containers", "Required value"))
    if pod_spec.get("restartPolicy") not in ("Never", "OnFailure"):
        causes.append(("spec.template.spec.restartPolicy",
                       f'Unsupported value: "{pod_spec.get("restartPolicy", "Always")}": supported values: "OnFailure", "Never"'))
    if causes:
        raise invalid(JOBS, name, causes)
    for key, value in (("backoffLimit", DEFAULT_BACKOFF_LIMIT), ("completions", 1), ("parallelism", 1),
                       ("completionMode", "NonIndexed"), ("suspend", False)):
        spec.setdefault(key, value)
    labels = template.setdefault("metadata", {}).setdefault("labels", {})
    labels.update({"job-name": name, "batch.kubernetes.io/job-name": name})
    spec.setdefault("selector", {"matchLabels": {"batch.kubernetes.io/job-name": name}})
    job["status"] = {}

"""ReadinessWorkflow: the read-only preflight of failover and of failback, on a quiet day.

A failover that would fail should be known on a Tuesday afternoon, not at 3 a.m. This runs
the reads a failover's and a failback's preflight make (DNS, every region's cluster and
workloads, each model's artifacts in every region, the RPO, the Velero backup) and judges
each as its own check, changing nothing, so it needs no claim at admission and may run
beside any run. A failing read is a not-ready check, never a failed workflow: the verdict
per check is the result.

Run by its schedule (`notify_changes`), it compares its verdict with the schedule's previous
one and tells the runbook's notifiers (event `readiness_changed`) when it turned, in either
direction, or when the very first verdict is not ready: nobody watches a dashboard of green.
The previous verdict is an activity the front door answers (activities/front_door.py, it needs a
Temporal client); a failure to read it or to deliver is recorded in the result, never fatal.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from activities import contracts as c
    from activities.contracts import (
        PreviousVerdict,
        PreviousVerdictInput,
        ReadinessCheck,
        ReadinessResult,
    )
    from drpilot.domain.durations import format_duration
    from drpilot.domain.runbook import Action as RunbookAction
    from drpilot.domain.runbook import DnsSwitch, Role
    from workflows import calls, metrics
    from workflows.block_readiness import block_checks
    from workflows.branches import together
    from workflows.cold_start import cold_start_verdicts
    from workflows.failures import explain
    from workflows.plan import backup_ages, format_weights, rpo_lags
    from workflows.types import ReadinessInput
    from workflows.versions import BLOCKS, CAPACITY, COLD_START, CONTROL_PLANE, DRILL_CADENCE

PREVIOUS = c.READINESS_PREVIOUS
CHANGED = "readiness_changed"
# Of an ARC cluster's five endpoints, this many must answer (AWS: use any that answers; with
# fewer, one more failure leaves the switch with nothing to talk to).
ENDPOINTS_NEEDED = 3


def routing_control_checks(rb: Any, found: c.RoutingControlsReadiness | str) -> list[ReadinessCheck]:
    """The routing-control switch is ready: enough endpoints answer, every control exists and
    is On (the normal layout: weights keep standbys out), every record set carries its
    region's health check."""
    if isinstance(found, str):
        return [ReadinessCheck(name="routing controls", ready=False, detail=found)]
    needed = min(ENDPOINTS_NEEDED, found.endpoints)
    checks = [ReadinessCheck(
        name="routing controls: cluster endpoints", ready=len(found.answering) >= needed,
        detail=f"{len(found.answering)} of {found.endpoints} answer (at least {needed} needed)"
        + (f"; {'; '.join(found.failing)}" if found.failing else ""),
    )]
    for region, state in found.states.items():
        detail = state if state != "missing" else "not found in the control panel: check spec.dns.routing_controls"
        checks.append(ReadinessCheck(
            name=f"{region}: routing control", ready=state == "On",
            detail=detail if state != "Off" else "Off; the normal layout has every control On",
        ))
    checks.append(ReadinessCheck(
        name="routing controls: health checks on records", ready=not found.without_health_check,
        detail="every record set carries its region's health check" if not found.without_health_check
        else f"missing or wrong on {', '.join(found.without_health_check)}: a control cannot take them out of DNS",
    ))
    return checks


async def _unread(why: str) -> str:
    return f"capacity unknown ({why})"


async def attempt(call: Any) -> Any:
    """The activity's result, or its failure as one line (read on: one bad read is one check)."""
    try:
        return await call
    except ActivityError as exc:
        return explain(exc)


def cadence_check(last: c.LastDrill | str, cadence: timedelta, now: datetime) -> ReadinessCheck:
    """Whether a drill completed within spec.drills.cadence: a failover nobody exercised lately is not ready."""
    name = f"drills: one completed within {format_duration(cadence)}"
    if not isinstance(last, c.LastDrill):
        return ReadinessCheck(name=name, ready=False, detail=last)  # the evidence could not be read
    if last.completed_at is None:
        return ReadinessCheck(name=name, ready=False, detail="no drill of this runbook completed: run `drpilot drill run`")
    age = max(now - last.completed_at, timedelta(0))
    detail = f"{last.drill_id} completed {format_duration(timedelta(seconds=round(age.total_seconds())))} ago"
    if age > cadence:
        return ReadinessCheck(name=name, ready=False, detail=f"{detail}, longer than spec.drills.cadence: run a drill")
    return ReadinessCheck(name=name, ready=True, detail=detail)


def cold_start_checks(rb: Any, last: c.LastDrill | str) -> list[ReadinessCheck]:
    """`REGION: cold start` per region the newest measuring drill brought up; nothing when no
    drill measured one yet (the cadence check is what asks for drills)."""
    if isinstance(last, str):
        return [ReadinessCheck(name="cold start", ready=False, detail=f"not checked: {last}")]
    if last.cold_start is None:
        return []
    return [
        ReadinessCheck(name=f"{region}: cold start", ready=ok, detail=text)
        for region, ok, text in cold_start_verdicts(rb, last.cold_start)
    ]


@workflow.defn
class ReadinessWorkflow:
    @workflow.run
    async def run(self, input: ReadinessInput) -> ReadinessResult:
        rb = input.runbook
        regions = list(rb.regions)
        models = [(r, m) for r in regions for m in rb.spec.models]
        velero = rb.spec.backups.velero
        # The regions a restore would bring up: the primary on failback, the standbys on failover.
        restore_on = velero.restore_on if velero is not None else []
        backups = [
            r for r, spec in rb.regions.items()
            if (RunbookAction.failback in restore_on and r == rb.primary)
            or (RunbookAction.failover in restore_on and spec.role is Role.standby)
        ]
        # 0.4.0: each region's capacity for the active counts (a failover's or failback's target).
        capacity = regions if workflow.patched(CAPACITY) else []
        reads = await together(
            attempt(calls.dns_read(rb)),
            *(attempt(calls.kube_read(rb, r, attempts=2)) for r in regions),
            *(attempt(calls.artifacts_verify(rb, r, m.name, m.version, attempts=2)) for r, m in models),
            *(attempt(calls.velero_backup(rb, r)) for r in backups),
            *(attempt(calls.kube_capacity(rb, r, attempts=2)) for r in capacity),
            *(attempt(calls.images_check(rb, r)) for r in capacity),
        )
        extra = 2 * len(capacity)
        sized = reads[len(reads) - extra : len(reads) - len(capacity)] if capacity else []
        pulled = reads[len(reads) - len(capacity) :] if capacity else []
        reads = reads[: len(reads) - extra]
        # The quota is held against the nodes the capacity check says the scale-out starts.
        quotas = await together(*(
            attempt(calls.quota_check(rb, r, room)) if isinstance(room, c.CapacityResult) else _unread(room)
            for r, room in zip(capacity, sized, strict=True)
        ))
        # 0.4.0: the routing-control switch (runbooks switched by it only).
        controls = None
        if rb.spec.dns.switch is DnsSwitch.routing_controls and workflow.patched(CONTROL_PLANE):
            controls = await attempt(calls.routing_controls_ready(rb))
        dns, kube = reads[0], reads[1 : 1 + len(regions)]
        verified = reads[1 + len(regions) : 1 + len(regions) + len(models)]
        backed = reads[1 + len(regions) + len(models) :]
        checks: list[ReadinessCheck] = []

        normal = rb.normal_weights()
        if isinstance(dns, c.DnsState):
            weights = dns.weights()
            as_expected = weights == normal
            checks.append(ReadinessCheck(
                name="dns", ready=as_expected,
                detail=f"{format_weights(weights)}" + ("" if as_expected else f"; normal is {format_weights(normal)}"),
            ))
        else:
            checks.append(ReadinessCheck(name="dns", ready=False, detail=dns))

        for region, state in zip(regions, kube, strict=True):
            if isinstance(state, c.ReplicaState):
                shown = ", ".join(f"{d.namespace}/{d.name} {d.ready}/{d.replicas}" for d in state.deployments)
                checks.append(ReadinessCheck(name=f"{region}: cluster and workloads", ready=True, detail=shown))
            else:
                checks.append(ReadinessCheck(name=f"{region}: cluster and workloads", ready=False, detail=state))

        for (region, model), v in zip(models, verified, strict=True):
            name = f"{region}: {model.name} {model.version}"
            if not isinstance(v, c.VerifyResult):
                checks.append(ReadinessCheck(name=name, ready=False, detail=v))
            elif not v.problems:
                checks.append(ReadinessCheck(name=name, ready=True, detail=f"{v.files} files verified"))
            elif model.archive:
                # A failover would restore from the archive (a Glacier retrieval: minutes to
                # hours of the RTO): not ready, though it would not fail outright.
                checks.append(ReadinessCheck(
                    name=name, ready=False,
                    detail=f"{len(v.problems)} problem(s) (e.g. {v.problems[0].key} {v.problems[0].problem}); "
                    f"a failover would restore from {model.archive} and spend RTO on it: repair the copy now",
                ))
            else:
                checks.append(ReadinessCheck(
                    name=name, ready=False,
                    detail=f"{len(v.problems)} problem(s) (e.g. {v.problems[0].key} {v.problems[0].problem}) "
                    "and no archive to restore from",
                ))

        if controls is not None:
            checks += routing_control_checks(rb, controls)
        for region, room, images, quota in zip(capacity, sized, pulled, quotas, strict=True):
            for what, found in (("capacity", room), ("images", images), ("quota", quota)):
                if isinstance(found, str):
                    checks.append(ReadinessCheck(name=f"{region}: {what}", ready=False, detail=f"not checked: {found}"))
                else:
                    checks.append(ReadinessCheck(name=f"{region}: {what}", ready=found.ready, detail=found.detail))

        copies = [v for v in verified if isinstance(v, c.VerifyResult)]
        lags = rpo_lags(rb, copies, copies)
        checks.append(ReadinessCheck(name="rpo: artifacts", ready=not lags, detail="; ".join(lags) or "every copy within the RPO"))
        if backups:
            infos = [b for b in backed if isinstance(b, c.VeleroBackupInfo)]
            problems = [b for b in backed if not isinstance(b, c.VeleroBackupInfo)]
            problems += backup_ages(rb, infos, workflow.now())
            checks.append(ReadinessCheck(
                name="rpo: velero backup", ready=not problems,
                detail="; ".join(problems) or f"{infos[0].name} within the RPO in {', '.join(backups)}",
            ))
        cadence = rb.spec.drills.cadence if rb.spec.drills else None
        last: c.LastDrill | str | None = None
        if cadence is not None and workflow.patched(DRILL_CADENCE):
            last = await attempt(calls.last_drill(rb))
            checks.append(cadence_check(last, cadence, workflow.now()))
        # 0.4.0: the cold start the newest drill measured, against what the RTO leaves for it.
        if rb.spec.drills is not None and workflow.patched(COLD_START):
            checks += cold_start_checks(rb, last if last is not None else await attempt(calls.last_drill(rb)))
        # 0.4.0: the blocks' checks (runbooks with blocks only: no other history meets the patch).
        if rb.spec.blocks and workflow.patched(BLOCKS):
            checks += await block_checks(rb)
        result = ReadinessResult(
            runbook=rb.name, ready=all(ch.ready for ch in checks), checks=checks, checked_at=workflow.now(),
        )
        metrics.record_readiness(result)  # the worker's /metrics: drpilot_ready{runbook,check}
        if input.notify_changes:
            result = await self.tell_if_changed(rb, result)
        return result

    async def tell_if_changed(self, rb: Any, result: ReadinessResult) -> ReadinessResult:
        notifiers = [n for n in rb.spec.notifications if CHANGED in n.events]
        if not notifiers:
            return result
        previous = await attempt(workflow.execute_activity(
            PREVIOUS, PreviousVerdictInput(runbook=rb.name, run_id=workflow.info().run_id),
            result_type=PreviousVerdict, start_to_close_timeout=timedelta(seconds=30),
            retry_policy=RetryPolicy(maximum_attempts=3), summary=f"previous readiness of {rb.name}",
        ))
        if not isinstance(previous, PreviousVerdict):
            return result.model_copy(update={"notes": [f"previous verdict unknown, nobody told: {previous}"]})
        before = previous.result
        if (before.ready if before else True) == result.ready:
            return result
        failing = [f"{ch.name} ({ch.detail})" for ch in result.checks if not ch.ready]
        text = (
            f"{rb.name} is NOT READY for failover/failback: " + "; ".join(failing)
            if not result.ready
            else f"{rb.name} is ready again: every check passes"
        )
        event = c.RunEvent(
            event=CHANGED, run_id=workflow.info().workflow_id, runbook=rb.name, action="readiness",
            at=workflow.now(), text=text, trigger="schedule",
        )
        sent = await together(*(attempt(calls.start_notify(n, event)) for n in notifiers))
        notes = [f"{'not ready' if not result.ready else 'ready again'}: told {len(notifiers)} notifier(s)"]
        notes += [f"notification not delivered ({s})" for s in sent if not isinstance(s, c.NotifyResult)]
        return result.model_copy(update={"notes": notes})

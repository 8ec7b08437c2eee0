"""The worker's log context: every activity runs with its run bound in structlog's context
(async activities and sync ones on the thread pool alike) and is logged once with its
outcome."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor

import structlog
from temporalio import activity
from temporalio.worker import Worker

from activities import contracts as c
from drpilot.frontdoor.worker import RunLogContext
from tests.support.temporal import WORKFLOWS
from tests.support.world import World
from workflows.failover import FailoverWorkflow
from workflows.types import FailoverInput


class Recorder:
    """Stands in for the structlog logger: keeps each event with the context bound then."""

    def __init__(self):
        self.events: list[dict] = []

    def _record(self, event: str, **fields) -> None:
        self.events.append({"event": event, **structlog.contextvars.get_contextvars(), **fields})

    info = warning = _record


async def test_activities_run_with_the_run_in_their_log_context(env, route53_runbook):
    world = World.normal(route53_runbook)
    seen: list[dict] = []

    @activity.defn(name=c.KUBE_READ)
    def kube_read(input: c.KubeReadInput) -> c.ReplicaState:  # sync: runs on the thread pool
        seen.append(structlog.contextvars.get_contextvars())
        return world._state(input.region)

    activities = [a for a in world.activities() if a.__name__ != "kube_read"] + [kube_read]
    task_queue = f"wf-{uuid.uuid4()}"
    workflow_id = f"failover:{route53_runbook.name}:{uuid.uuid4()}"
    logs = Recorder()
    with ThreadPoolExecutor(4) as pool:
        async with Worker(
            env.client, task_queue=task_queue, workflows=WORKFLOWS, activities=activities,
            activity_executor=pool, interceptors=[RunLogContext(log=logs)],
        ):
            result = await env.client.execute_workflow(
                FailoverWorkflow.run, FailoverInput(runbook=route53_runbook, failed_region="us-east-1"),
                id=workflow_id, task_queue=task_queue,
            )
    assert result.status == "completed"
    assert seen and all(ctx["run"] == workflow_id and ctx["activity"] == c.KUBE_READ for ctx in seen)
    assert all(ctx["attempt"] == 1 for ctx in seen)
    done = [e for e in logs.events if e["event"] == "activity done"]
    assert len(done) == len(world.calls) + len(seen)
    assert all(e["seconds"] >= 0 and e["run"] == workflow_id for e in done)
    assert {e["activity"] for e in done} >= {c.DNS_APPLY, c.KUBE_SCALE, c.KUBE_READ}
    assert structlog.contextvars.get_contextvars() == {}  # nothing leaks out of the activity

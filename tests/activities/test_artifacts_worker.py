"""ArtifactActivities in a real Temporal worker: the threads that verify files and hash their
chunks heartbeat through the worker, during a failover whose other steps are the simulated
world (tests/support/world.py)."""

from __future__ import annotations

import math
import uuid
from concurrent.futures import ThreadPoolExecutor

from drpilot_twin.aws.s3 import MODEL_FILES, seed_s3
from temporalio import activity
from temporalio.worker import (
    ActivityInboundInterceptor,
    ActivityOutboundInterceptor,
    Interceptor,
    Worker,
)

from activities import contracts as c
from activities.artifacts.activities import ArtifactActivities
from activities.artifacts.objects import CHUNK_BYTES
from tests.support.artifacts import SHARDS, upload_checkpoint, with_model
from tests.support.temporal import WORKFLOWS
from tests.support.world import World
from workflows.failover import FailoverWorkflow
from workflows.types import FailoverInput


class Heartbeats(Interceptor):
    """Every heartbeat an activity sends through the worker (the worker runs this on its event
    loop, whichever thread called activity.heartbeat)."""

    def __init__(self):
        self.seen: list[str] = []  # activity type of each heartbeat

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _Inbound(next, self)


class _Inbound(ActivityInboundInterceptor):
    def __init__(self, next: ActivityInboundInterceptor, record: Heartbeats):
        super().__init__(next)
        self._record = record

    def init(self, outbound: ActivityOutboundInterceptor) -> None:
        super().init(_Outbound(outbound, self._record))


class _Outbound(ActivityOutboundInterceptor):
    def __init__(self, next: ActivityOutboundInterceptor, record: Heartbeats):
        super().__init__(next)
        self._record = record

    def heartbeat(self, *details) -> None:
        self._record.seen.append(activity.info().activity_type)
        super().heartbeat(*details)


async def test_deep_verify_heartbeats_from_its_threads_in_a_real_worker(env, s3, route53_runbook):
    runbook = with_model(route53_runbook, verify="deep")
    seed_s3(s3, runbook)
    upload_checkpoint(s3)
    world = World.normal(runbook)
    artifacts = ArtifactActivities(s3)
    activities = [a for a in world.activities() if a.__name__ != "artifacts_verify"] + [artifacts.verify]
    beats = Heartbeats()
    with ThreadPoolExecutor(4) as pool:
        async with Worker(
            env.client, task_queue=f"wf-{uuid.uuid4()}", workflows=WORKFLOWS, activities=activities,
            activity_executor=pool, interceptors=[beats],
        ) as worker:
            result = await env.client.execute_workflow(
                FailoverWorkflow.run, FailoverInput(runbook=runbook, failed_region="us-east-1"),
                id=f"failover:{runbook.name}:{uuid.uuid4()}", task_queue=worker.task_queue,
            )
    assert result.status == "completed"
    verify_beats = [kind for kind in beats.seen if kind == c.ARTIFACTS_VERIFY]
    # One per file verified (llm-7b deep, the other models fast) and one per chunk hashed:
    # the chunk heartbeats come from the verifier's own threads, and reach the worker only
    # when those threads run in the activity's context.
    files = len(SHARDS) + len(MODEL_FILES) * (len(runbook.spec.models) - 1)
    chunks = sum(math.ceil(spec["size"] / CHUNK_BYTES) for spec in SHARDS.values())
    assert len(verify_beats) >= files + chunks > files

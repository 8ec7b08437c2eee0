"""Capacity end to end against the twin: the real worker (in process) and real activities
against its Kubernetes emulators, whose scheduler and Karpenter decide where pods run.

The DR region has no free GPU: readiness says so in numbers and a graceful failover stops in
preflight, changing nothing. Once its NodePool may grow, readiness turns ready ("fits after
scale-out") and the failover waits for the new nodes and completes."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from drpilot_twin.faults import Faults
from kubernetes import client as k8s
from kubernetes import config as k8s_config

from drpilot import report
from drpilot.domain.loader import load_runbook
from drpilot.domain.settings import load_settings
from drpilot.frontdoor import readiness
from drpilot.frontdoor.temporal import connect
from drpilot.frontdoor.worker import run_worker
from tests.support.paths import ROUTE53_RUNBOOK
from workflows.failover import FailoverWorkflow
from workflows.types import FailoverInput, RunResult

pytestmark = pytest.mark.e2e
DR = "us-west-2"
RUNBOOK = load_runbook(ROUTE53_RUNBOOK)


async def failover(client, settings, run_id: str = "") -> RunResult:
    return await client.execute_workflow(
        FailoverWorkflow.run, FailoverInput(runbook=RUNBOOK, failed_region="us-east-1", trigger="cli", speed=settings.speed),
        id=run_id or f"failover-{uuid.uuid4()}", task_queue=settings.temporal.task_queue, result_type=RunResult,
    )


async def test_a_short_region_is_not_ready_until_its_nodepool_may_grow(twin_factory, monkeypatch):
    twin = twin_factory(
        ROUTE53_RUNBOOK, temporal=True, speed=60,
        faults=Faults(gpu_free={DR: 0}, node_provision_seconds={DR: 120}),
    )
    for key, value in twin.env().items():
        monkeypatch.setenv(key, value)
    settings = load_settings()
    stop = asyncio.Event()
    worker = asyncio.create_task(run_worker(settings, stop=stop))
    api = k8s_config.new_client_from_config(
        config_file=twin.env()["KUBECONFIG"], context=RUNBOOK.regions[DR].kube.context, persist_config=False
    )
    try:
        client = await connect(settings.temporal)
        checked = await readiness.check_now(client, settings, RUNBOOK)
        check = next(c for c in checked.checks if c.name == f"{DR}: capacity")
        assert not check.ready and check.detail.endswith("short by 7 pods (7 nvidia.com/gpu)"), check.detail

        refused = await failover(client, settings)
        assert refused.status == "failed"
        assert refused.phases[0].name == "preflight" and "short by 7 pods" in refused.phases[0].detail
        assert twin.weights() == {"us-east-1": 100, "us-west-2": 0}
        assert twin.clusters[DR].deployment("ml-serving", "inference-service")["spec"]["replicas"] == 1

        k8s.CustomObjectsApi(api).patch_cluster_custom_object(
            "karpenter.sh", "v1", "nodepools", "gpu", {"spec": {"limits": {"nvidia.com/gpu": "24"}}}
        )
        checked = await readiness.check_now(client, settings, RUNBOOK)
        check = next(c for c in checked.checks if c.name == f"{DR}: capacity")
        assert check.ready and check.detail.endswith(
            "0 fit now, NodePool gpu may add 8 nvidia.com/gpu (limit 24): fits after scale-out"
        ), check.detail

        run_id = f"failover-{uuid.uuid4()}"
        done = await failover(client, settings, run_id)
        assert done.status == "completed", done.messages
        assert twin.weights() == {"us-east-1": 0, "us-west-2": 100}
        nodes = k8s.CoreV1Api(api).list_node().items
        assert len(nodes) == 6  # two g5.12xlarge from the NodePool for the 7 pods
        # The scale-up waited for them: 120 s of provisioning, 2 s at speed 60.
        prepare = next(p for p in done.phases if p.name == "prepare")
        assert prepare.seconds is not None and prepare.seconds >= 2.0
        # ...and the cold start, measured from the pods, says where the time went.
        assert f"{DR}: cold start ml-serving/inference-service, 5 pods: scheduled +" in prepare.detail, prepare.detail
        # Every stage, in order, to the model versions ready and the warm-up's end; in the
        # result and as rows of the report's timeline.
        cold = next(c for c in done.cold_starts if c.workload == "ml-serving/inference-service")
        stages = [s for _, s in cold.stages()]
        assert cold.region == DR and None not in stages and stages == sorted(stages), cold
        assert cold.scheduled >= 1.0  # the pods waited for the new nodes (120 s / 60, whole seconds)
        history = await client.get_workflow_handle(run_id).fetch_history()
        rows = [(b.depth, b.label) for b in report.build(report.read(history)).bars]
        at = rows.index((1, f"cold start {DR} ml-serving/inference-service"))
        assert [label for _, label in rows[at + 1: at + 7]] == [
            "scheduled", "pulled", "started", "ready", "model version ready", "warmed"
        ]
    finally:
        api.close()
        stop.set()
        await worker

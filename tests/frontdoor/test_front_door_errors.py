"""Temporal refusing the front door, and runs ended from outside drpilot: one sentence each,
against the real dev server (no time skipping: nothing here waits on a timer)."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import pytest
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment

from drpilot.domain.settings import TemporalSettings
from drpilot.frontdoor import runs
from drpilot.frontdoor.temporal import TemporalUnavailable, connect, rpc_problem
from tests.support.paths import ROOT
from workflows.types import WORKFLOW_NAMES


def address(env: WorkflowEnvironment) -> str:
    return env.client.service_client.config.target_host


async def test_a_namespace_that_does_not_exist_is_named_with_the_fix(dev_env):
    settings = TemporalSettings(address=address(dev_env), namespace="no-such-namespace")
    with pytest.raises(TemporalUnavailable) as caught:
        await connect(settings)
    assert str(caught.value) == (
        f"namespace 'no-such-namespace' not found at Temporal at {settings.address}: create it "
        "(`temporal operator namespace create --namespace no-such-namespace`) or set "
        "DRPILOT_TEMPORAL_NAMESPACE to one that exists"
    )
    # The CLI says the same in one line, no traceback.
    cli = subprocess.run(
        [sys.executable, "-m", "drpilot", "status"], capture_output=True, text=True, cwd=ROOT, timeout=60,
        env={**os.environ, "DRPILOT_TEMPORAL_ADDRESS": settings.address, "DRPILOT_TEMPORAL_NAMESPACE": "no-such-namespace"},
    )
    assert (cli.returncode, cli.stderr.strip()) == (1, f"error: {caught.value}")


def test_permission_denied_names_the_credentials_to_fix():
    # The dev server has no authorizer, so the SDK's own error, as the Rust core raises it
    # for a gRPC PERMISSION_DENIED (Temporal Cloud: an API key without access).
    denied = RPCError("Request unauthorized.", RPCStatusCode.PERMISSION_DENIED, b"")
    assert rpc_problem(denied, "ns.tmprl.cloud:7233", "dr") == (
        "permission denied by Temporal at ns.tmprl.cloud:7233 for namespace 'dr': Request unauthorized.. "
        "Give drpilot's API key (DRPILOT_TEMPORAL_API_KEY) or client certificate "
        "(DRPILOT_TEMPORAL_TLS_CERT) access to it"
    )
    assert runs._rpc(denied).startswith("permission denied by Temporal for the namespace: ")


async def test_a_terminated_run_is_one_sentence_not_a_traceback(dev_env):
    # No worker polls this queue: the run waits, then an operator terminates it in Temporal.
    run_id = f"failover:terminated-{uuid.uuid4().hex[:8]}"
    handle = await dev_env.client.start_workflow(
        WORKFLOW_NAMES["failover"], {"not": "read"}, id=run_id, task_queue=f"nobody-{uuid.uuid4().hex}"
    )
    await handle.terminate(reason="stuck; ended by hand")
    expected = (
        f"run {run_id} was terminated in Temporal (stuck; ended by hand); no compensation ran, so "
        "DNS and replicas are as the run left them: check them with `drpilot runbook plan`, then "
        "start a new run"
    )
    # `--wait --json` reads the result; `--wait` watches progress until it.
    for call in (runs.result, lambda h: runs.watch(h, lambda _p: None, every=0.1)):
        with pytest.raises(runs.RunError) as caught:
            await call(dev_env.client.get_workflow_handle(run_id))
        assert str(caught.value) == expected

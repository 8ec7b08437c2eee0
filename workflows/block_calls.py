"""The activities a run's blocks call (workflows/blocks.py), with their timeouts and retry
policies, as workflows/calls.py does for the serving tier's.

An http block is retried on a 5xx, a 408 / 429, a timeout or a refused connection (the
activity says which errors are retryable: activities/blocks/http.py), with its
Idempotency-Key unchanged, so the receiver sees one request however often it is sent.
"""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities import contracts as c
    from drpilot.domain.runbook import Runbook
    from workflows.calls import HEARTBEAT, _execute, _retry, _scaled


async def http(input: c.HttpBlockInput) -> c.HttpBlockResult:
    # Each attempt may take the request's timeout; a receiver that stays down is given up
    # on after the attempts (about 2 minutes of backoff), failing the block.
    return await _execute(
        c.BLOCK_HTTP, input, c.HttpBlockResult, seconds=input.timeout_seconds + 10, retry=_retry(6),
        summary=f"block {input.block}: {input.call.method} request",
    )


async def http_preflight(block: str, env: list[str]) -> c.HttpPreflightResult:
    return await _execute(
        c.BLOCK_HTTP_PREFLIGHT, c.HttpPreflightInput(block=block, env=env), c.HttpPreflightResult,
        seconds=30, retry=_retry(3, 5), summary=f"block {block}: worker environment",
    )


async def read_workloads(runbook: Runbook, region: str, workloads: list[str]) -> c.ReplicaState:
    """A scale block's Deployments in `region`, read-only; one try (the region may be dark)."""
    return await _execute(
        c.KUBE_READ, c.KubeReadInput(runbook=runbook, region=region, workloads=workloads), c.ReplicaState,
        seconds=30, retry=_retry(1), summary=f"read block workloads in {region}",
    )


async def scale(runbook: Runbook, region: str, counts: dict[str, int], speed: float, wait_seconds: float) -> c.ScaleResult:
    """A scale block's Deployments to exact counts (kube.scale), waiting for the pods asked for."""
    timeout = _scaled(wait_seconds, speed)
    return await _execute(
        c.KUBE_SCALE,
        c.ScaleInput(runbook=runbook, region=region, to="exact", counts=counts, timeout_seconds=timeout, speed=speed),
        c.ScaleResult, seconds=timeout + 60, heartbeat=HEARTBEAT, retry=_retry(5),
        summary=f"scale block workloads in {region}", projected=True,
    )

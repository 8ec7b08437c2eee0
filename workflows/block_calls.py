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
    from workflows.calls import _execute, _retry, _scaled


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
        c.ScaleResult, seconds=timeout + 60, heartbeat=60, retry=_retry(5),
        summary=f"scale block workloads in {region}", projected=True,
    )


async def aurora_read(input: c.AuroraReadInput) -> c.AuroraState:
    return await _execute(
        c.BLOCKS_AURORA_READ, input, c.AuroraState, seconds=120, retry=_retry(3, 5),
        summary=f"block {input.block}: read Aurora global database {input.global_cluster}",
    )


async def aurora_switch(input: c.AuroraSwitchInput) -> c.AuroraSwitchResult:
    """Long (a switchover takes minutes): heartbeats; a retry finds the switchover it asked
    for and waits for it instead of asking again (activities/blocks/aurora.py)."""
    timeout = _scaled(input.timeout_seconds, input.speed, 60)
    return await _execute(
        c.BLOCKS_AURORA_SWITCH, input, c.AuroraSwitchResult, seconds=timeout + 120, heartbeat=60,
        retry=_retry(5), summary=f"block {input.block}: writer of {input.global_cluster} to {input.target}", projected=True,
    )


async def job_preflight(input: c.JobPreflightInput) -> c.JobPreflight:
    return await _execute(
        c.BLOCKS_JOB_PREFLIGHT, input, c.JobPreflight, seconds=60, retry=_retry(2, 5),
        summary=f"block {input.block}: dry-run Job in {input.region}",
    )


async def job_run(input: c.JobRunInput) -> c.JobRunResult:
    """Created once (its name follows from the run and the block), then waited for: heartbeats."""
    timeout = _scaled(input.timeout_seconds, input.speed, 60)
    return await _execute(
        c.BLOCKS_JOB_RUN, input, c.JobRunResult, seconds=timeout + 120, heartbeat=60, retry=_retry(5),
        summary=f"block {input.block}: Job in {input.region}", projected=True,
    )

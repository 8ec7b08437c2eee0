"""The world as a run reads it: DNS weights and each region's replicas, at one moment."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from typing import Any

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities import contracts as c
    from drpilot.domain.runbook import Runbook
    from workflows import calls
    from workflows.failures import explain
    from workflows.types import WorldState


def workloads(states: Iterable[c.ReplicaState]) -> tuple[dict[str, dict[str, int]], dict[str, dict[str, int]]]:
    """Desired and ready replicas per region, by namespace/name."""
    replicas: dict[str, dict[str, int]] = {}
    ready: dict[str, dict[str, int]] = {}
    for state in states:
        replicas[state.region] = {f"{d.namespace}/{d.name}": d.replicas for d in state.deployments}
        ready[state.region] = {f"{d.namespace}/{d.name}": d.ready for d in state.deployments}
    return replicas, ready


async def read_world(runbook: Runbook, held: dict[str, int], say: Callable[[str], None]) -> WorldState:
    """DNS and replicas as the providers report them; unreachable regions are listed. When
    DNS cannot be read, `held` (the last weights applied) stands in for it, and `say` tells."""
    regions = list(runbook.regions)
    reads = await asyncio.gather(
        calls.dns_read(runbook),
        *(calls.kube_read(runbook, r, attempts=1) for r in regions),
        return_exceptions=True,
    )
    dns, states = reads[0], dict(zip(regions, reads[1:], strict=True))
    state: dict[str, Any] = {}
    if isinstance(dns, c.DnsState):
        state["dns"] = dns.weights()
    else:
        state["dns"] = dict(held)
        say(f"could not read DNS ({explain(dns)}); showing the last weights applied")
    state["replicas"], state["ready"] = workloads(s for s in states.values() if isinstance(s, c.ReplicaState))
    state["unreachable"] = [r for r, s in states.items() if not isinstance(s, c.ReplicaState)]
    return WorldState(**state)

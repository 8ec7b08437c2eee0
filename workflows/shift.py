"""The weighted traffic shift with rollback, reusable by any run (failback, drills).

For each step (runbook traffic_shift.steps, default 10/25/50/75/100): set the weights
that far from `start` to `home`, wait until the provider applied them and the TTL passed,
bake, then analyse the region receiving the traffic. Degradation at any step returns all
traffic to `start` (the state that was serving healthily before the shift), records the
failing evidence and ends the run as rolled_back.

History stays small: one DNS change, two timers and one analysis per step; the bake is a
single durable timer, never a per-second loop.
"""

from __future__ import annotations

from dataclasses import dataclass

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from workflows import calls
    from workflows.control import PhaseFailed, Run, region_evidence
    from workflows.plan import format_weights, shift_weights


@dataclass(frozen=True)
class Shift:
    start: dict[str, int]  # weights before the shift: where a rollback returns
    home: dict[str, int]  # weights at 100%
    region: str  # the region receiving traffic, whose health each step judges


async def shift_traffic(run: Run, shift: Shift) -> None:
    spec = run.runbook.spec.traffic_shift
    ttl = max(r.ttl for r in run.runbook.spec.dns.records)
    bake = spec.bake.total_seconds()
    for percent in spec.steps:
        await run.hold_if_paused()
        weights = shift_weights(shift.start, shift.home, percent)
        name = f"shift {percent}%"
        run.set_step(f"{percent}%")
        async with run.phase(name):
            # The TTL wait inside move_dns counts towards the bake (the runbook requires
            # bake >= TTL): resolvers move to the new weights during it.
            await run.move_dns(weights, good=False, phase=name)
            await workflow.sleep(max(bake - ttl, 0) / run.speed, summary=f"bake at {percent}%")
            # A pause holds the step here, before it is judged, for as long as needed.
            await run.hold_if_paused()
            analysis = await calls.analyse(run.runbook, shift.region, bake / run.speed)
            evidence = region_evidence(shift.region, analysis.evidence)
            summary = (
                f"{shift.region}: {analysis.requests} requests, error rate {analysis.error_rate:.2%}, "
                f"p99 {analysis.p99_ms:.0f}ms"
            )
            if analysis.healthy:
                run.note(name, summary, evidence)
                continue
            run.note(name, f"DEGRADED {summary}")
            await run.move_dns(shift.start, good=True, phase=name)
            raise PhaseFailed(
                f"degradation at {percent}% ({summary}); all traffic returned to "
                f"{format_weights(shift.start)}",
                status="rolled_back",
                evidence=evidence,
            )
    run.set_step(None)

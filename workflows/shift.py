"""The weighted traffic shift with rollback, reusable by any run (failback, drills).

For each step (runbook traffic_shift.steps, default 10/25/50/75/100): set the weights
that far from `start` to `home`, wait until the provider applied them and the TTL passed,
bake, then analyse every region serving at that step: the one receiving the traffic and
(0.2.0) the ones holding the rest, which can degrade too during a 75-minute shift.
Degradation anywhere returns all traffic to the last good state (the one that served
before the shift), but only to its regions that pass a health check now and did not just
degrade (workflows/traffic.py): the run ends rolled_back with the failing evidence, or
failed with "no healthy destination" and DNS left where it was.

History stays small: one DNS change, two timers and one analysis per region per step; the
bake is a single durable timer, never a per-second loop.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities import contracts as c
    from workflows import calls, projection
    from workflows.control import Run
    from workflows.failures import NoHealthyDestination, PhaseFailed
    from workflows.gates import region_evidence
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
    hold_if_paused = run.operator.hold_if_paused
    for percent in spec.steps:
        await hold_if_paused()
        weights = shift_weights(shift.start, shift.home, percent)
        name = f"shift {percent}%"
        run.step = f"{percent}%"
        async with run.phase(name):
            # The TTL wait inside move counts towards the bake (the runbook requires
            # bake >= TTL): resolvers move to the new weights during it.
            await run.traffic.move(weights, phase=name, good=False, fresh=[shift.region])
            rest = max(bake - ttl, 0)
            await run.pace.sleep(rest / run.speed, kind="bake", unscaled=rest, summary=f"bake at {percent}%")
            # A pause holds the step here, before it is judged, for as long as needed.
            await hold_if_paused()
            judged = [shift.region]
            if run.v2:
                judged += [r for r, w in sorted(weights.items()) if w > 0 and r != shift.region]
            # Every analysis runs to its end (short, read-only): a failing one does not cancel
            # the others, so no verdict is cut off half-way; the first error is then raised.
            outcomes = await asyncio.gather(
                *(calls.analyse(run.runbook, r, bake / run.speed, run.speed) for r in judged), return_exceptions=True
            )
            errors = [o for o in outcomes if isinstance(o, BaseException)]
            if errors:
                raise errors[0]
            analyses: list[c.AnalyseResult] = list(outcomes)
            if run.speed != 1:  # each sampled the region's /metrics for the bake / speed, at most
                sample = max(min(bake, c.ANALYSIS_SAMPLE_MAX_SECONDS), c.ANALYSIS_SAMPLE_MIN_SECONDS)
                projection.parallel(
                    [c.ScaledWait(kind="analysis", seconds=a.sample_seconds, unscaled_seconds=sample)
                     for a in analyses if a.sample_seconds > 0]
                )
                # A hold for Prometheus's ranges is only the rehearsal's: at speed 1 the bake
                # spans it. The longest hold (they ran side by side) is on the path.
                held = max((a.held_seconds for a in analyses), default=0.0)
                if held > 0:
                    projection.record([c.ScaledWait(kind="measurement", seconds=held, unscaled_seconds=0)])
            run.gates.gated()
            summary = "; ".join(
                f"{a.region}: {a.requests} requests, error rate {a.error_rate:.2%}, p99 {a.p99_ms:.0f}ms"
                for a in analyses
            )
            evidence = [e for a in analyses for e in region_evidence(a.region, a.evidence)]
            degraded = [a.region for a in analyses if not a.healthy]
            if not degraded:
                run.timeline.note(name, summary, evidence)
                continue
            # The failing numbers first in the phase's evidence, then the destination's checks.
            run.timeline.note(name, f"DEGRADED {', '.join(degraded)}: {summary}", evidence)
            try:
                destination = await run.traffic.fall_back(name, exclude=frozenset(degraded))
            except NoHealthyDestination as exc:
                raise PhaseFailed(f"degradation at {percent}% ({summary}) and {exc}") from None
            raise PhaseFailed(
                f"degradation at {percent}% ({summary}); all traffic returned to {format_weights(destination)}",
                status="rolled_back",
            )
    run.step = None

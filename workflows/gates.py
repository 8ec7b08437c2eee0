"""A run's health gates, the RPO and capacity checks: the verdicts that let traffic move.

A full gate (the runbook's consecutive passes) lets DNS move without checking again; once
the run has waited since (`Operator.waited`), the next move first checks its destination
with one short round (`fresh_check`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from activities import contracts as c
    from workflows import calls
    from workflows.branches import together
    from workflows.facts import RunFacts
    from workflows.failures import PhaseFailed, explain
    from workflows.operator import Operator
    from workflows.timeline import Timeline


def region_evidence(region: str, evidence: list[c.CheckEvidence]) -> list[c.CheckEvidence]:
    return [e.model_copy(update={"check": f"{region}: {e.check}"}) for e in evidence]


@dataclass(eq=False, kw_only=True)
class Gates:
    run: RunFacts
    timeline: Timeline
    operator: Operator

    @property
    def waited(self) -> bool:
        """The run waited (approval, pause, drift) since its last gate."""
        return self.operator.waited

    def gated(self) -> None:
        """A gate just judged the regions: DNS may move without checking them again."""
        self.operator.waited = False

    async def gate(self, phase: str, regions: list[str], *, rounds: int | None = None) -> list[c.HealthResult]:
        """Health-gate `regions` in parallel, each verdict noted in `phase`. `rounds=1` is one
        short check (right before a DNS move, or of a rollback's destination); the full gate
        (the runbook's consecutive passes) is what lets DNS move without checking again."""
        results = await together(*(calls.health_gate(self.run.runbook, r, self.run.speed, rounds=rounds) for r in regions))
        for r in results:
            verdict = "passed" if r.passed else "FAILED"
            self.timeline.note(phase, f"{r.region} {verdict} after {r.rounds} round(s)", region_evidence(r.region, r.evidence))
        if rounds is None:
            self.gated()
        return results

    async def must_pass(self, phase: str, regions: list[str], consequence: Callable[[], str]) -> None:
        """The phase `phase`: every region passes its gate, else the run fails saying what
        that left (`consequence`, e.g. "DNS not changed")."""
        async with self.timeline.phase(phase):
            results = await self.gate(phase, regions)
            failing = [r.region for r in results if not r.passed]
            if failing:
                raise PhaseFailed(f"{', '.join(failing)} failed the health gate; {consequence()}")

    async def fresh_check(self, phase: str, regions: list[str]) -> None:
        """Right before DNS moves after a wait: the destination must still be healthy."""
        results = await self.gate(phase, regions, rounds=1)
        failing = [r for r in results if not r.passed]
        if failing:
            raise PhaseFailed(
                f"{', '.join(r.region for r in failing)} failed a fresh health check right before the DNS "
                "change (the run waited since its gate); DNS not changed",
                evidence=[e for r in failing for e in region_evidence(r.region, r.evidence)],
            )
        self.gated()

    def check_rpo(self, phase: str, problems: list[str]) -> None:
        """The DR side older than objectives.rpo: fail before any change, or warn (rpo_policy)."""
        if not problems:
            return
        objectives = self.run.runbook.spec.objectives
        text = f"older than the RPO {objectives.rpo.total_seconds():g}s: {'; '.join(problems)}"
        if objectives.rpo_policy == "warn":
            self.timeline.note(phase, f"WARNING {text} (objectives.rpo_policy: warn)")
            self.timeline.say(f"warning: {text}")
            return
        raise PhaseFailed(f"{text}; nothing was changed (set objectives.rpo_policy: warn to go on regardless)")

    async def check_capacity(self, phase: str, regions: list[str], strategy: str, *, pulls: bool = False) -> None:
        """Can the targets hold the workloads' pods (0.4.0)? And, with `pulls` (the cold-start
        patch), pull their images and start their nodes within the GPU quota? A graceful
        failover that cannot stops before any change (guardrails.capacity: fail, the default):
        the outage is elsewhere, the primary still serves, and half a fleet in the DR region
        would fail the health gate anyway. An ungraceful one warns and goes on: its failed
        region is dark, and partial capacity serves more than none. A read that fails is "not
        checked", a warning, never a pass."""
        rb = self.run.runbook

        async def attempt(region: str, what: str, call: Any) -> Any:
            try:
                return await call
            except ActivityError as exc:
                return f"{region}: {what} not checked ({explain(exc)})"

        async def read(region: str) -> list[tuple[str, Any]]:
            if not pulls:
                return [("capacity", await attempt(region, "capacity", calls.kube_capacity(rb, region)))]
            room, images = await together(
                attempt(region, "capacity", calls.kube_capacity(rb, region)),
                attempt(region, "images", calls.images_check(rb, region)),
            )
            quota = (
                await attempt(region, "quota", calls.quota_check(rb, region, room))
                if isinstance(room, c.CapacityResult) else f"{region}: quota not checked (capacity unknown)"
            )
            return [("capacity", room), ("images", images), ("quota", quota)]

        short: list[str] = []
        images = ""  # the fix for images the region cannot pull, when it is one
        for found in await together(*(read(r) for r in regions)):
            for what, r in found:
                if isinstance(r, str):
                    self.timeline.note(phase, f"WARNING {r}")
                elif what == "capacity" and r.verdict != "short":
                    self.timeline.note(phase, f"capacity: {r.detail}")
                elif what == "capacity":
                    short.append(r.detail)
                elif r.ready:
                    self.timeline.note(phase, f"{r.region}: {what}: {r.detail}")
                else:
                    short.append(f"{r.region}: {what}: {r.detail}")
                    if what == "images":
                        images = "push the images to the registry in the region they are pulled in, "
        if not short:
            return
        text = "; ".join(short)
        if strategy == "graceful" and rb.spec.guardrails.capacity == "fail":
            raise PhaseFailed(
                f"{text}; nothing was changed: {images}free GPUs there, raise "
                "the NodePool's spec.limits or the GPU quota, choose other targets with --to, or set "
                "guardrails.capacity: warn to go on regardless"
            )
        why = "ungraceful: partial capacity beats none" if strategy != "graceful" else "guardrails.capacity: warn"
        self.timeline.note(phase, f"WARNING {text} ({why})")
        self.timeline.say(f"warning: {text}")

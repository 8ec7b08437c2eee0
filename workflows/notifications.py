"""A run's notifications (spec.notifications, 0.2.0): delivered beside the procedure, never in
its way; collected before the run ends, and one not delivered is recorded, never fatal."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities import contracts as c
    from workflows import calls
    from workflows.facts import RunFacts
    from workflows.failures import explain
    from workflows.timeline import Timeline
    from workflows.versions import Patches


@dataclass(eq=False, kw_only=True)
class Notifications:
    run: RunFacts
    patches: Patches
    timeline: Timeline
    _deliveries: list[asyncio.Future] = field(default_factory=list, init=False)  # in flight
    _undelivered: list[str] = field(default_factory=list, init=False)

    @property
    def subject(self) -> str:
        """How a notification names the run: "failover of checkout"."""
        return f"{self.run.action} of {self.run.runbook.name}"

    def notify(self, event: str, text: str) -> None:
        """Tell the runbook's notifiers that listen for `event`."""
        notifiers = [n for n in self.run.runbook.spec.notifications if event in n.events] if self.patches.v2 else []
        if not notifiers:
            return
        if self.run.override_safety_rules:
            text += f" (break-glass: safety rule(s) {', '.join(self.run.override_safety_rules)} overridden)"
        payload = c.RunEvent(
            event=event, run_id=workflow.info().workflow_id, runbook=self.run.runbook.name, action=self.run.action,
            at=workflow.now(), text=text, trigger=self.run.trigger, requested_by=self.run.requested_by,
        )
        self._deliveries += [asyncio.ensure_future(self._deliver(n, payload)) for n in notifiers]

    async def _deliver(self, notifier: Any, event: c.RunEvent) -> None:
        try:
            await calls.start_notify(notifier, event)
        except Exception as exc:  # noqa: BLE001 - recorded in the run, never fatal
            self._undelivered.append(f"{event.event}: {explain(exc)}")

    async def collect(self) -> bool:
        """Wait for every delivery; those that failed go to the timeline. False: none was sent."""
        if not self._deliveries:
            return False
        await asyncio.gather(*self._deliveries)
        for line in self._undelivered:
            self.timeline.say(f"notification not delivered ({line})")
        return True

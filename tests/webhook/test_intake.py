"""The webhook's batching of alerts' claims (drpilot/webhook/intake.py Admitter), in order of
events: its send function stands in for the admission update, held until the test lets it go."""

from __future__ import annotations

import asyncio

import pytest

from activities.contracts import Admission, Claim, GuardedClaim
from drpilot.webhook.guardrails import Unavailable
from drpilot.webhook.intake import Admitter


def guarded(runbook: str) -> GuardedClaim:
    claim = Claim(run_id=f"failover:{runbook}", action="failover", runbook=runbook, dns_records=[], request={})
    return GuardedClaim(claim=claim)


class HeldSend:
    """Admission's update as the Admitter sees it: each call recorded, answered when released."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.release = asyncio.Event()
        self.fail = False

    async def __call__(self, claims: list[GuardedClaim]) -> list[Admission]:
        self.batches.append([c.claim.runbook for c in claims])
        await self.release.wait()
        if self.fail:
            raise Unavailable("no drpilot worker answered")
        return [Admission(admitted=True) for _ in claims]


async def _until(check) -> None:
    async with asyncio.timeout(10):
        while not check():
            await asyncio.sleep(0)


async def test_alerts_arriving_while_an_update_is_in_flight_go_together_in_the_next():
    send = HeldSend()
    admitter = Admitter(send)
    first = asyncio.create_task(admitter.admit(guarded("a")))
    await _until(lambda: send.batches == [["a"]])
    others = [asyncio.create_task(admitter.admit(guarded(name))) for name in "bcd"]
    await _until(lambda: len(admitter._waiting) == 3)
    send.release.set()
    answers = await asyncio.gather(first, *others)
    assert all(a.admitted for a in answers)
    assert send.batches == [["a"], ["b", "c", "d"]]  # two updates for four alerts, in order


async def test_an_update_that_fails_fails_each_of_its_claims_and_the_next_ones_still_go():
    send = HeldSend()
    admitter = Admitter(send)
    send.fail = True
    first = asyncio.create_task(admitter.admit(guarded("a")))
    await _until(lambda: send.batches == [["a"]])
    send.release.set()
    with pytest.raises(Unavailable):
        await first
    send.fail = False
    assert (await admitter.admit(guarded("b"))).admitted
    assert send.batches == [["a"], ["b"]]

"""What every DNS provider does with a runbook's weighted records, and the words they share.

A runbook's records are each a set of weighted targets, one per region; all records move
together, so one desired state is one weight per region. A provider reads what it holds
(`current`), makes ONE change setting every record (`apply`), and reports whether that change
is served everywhere yet (`refresh`); waiting for it (`wait_applied`) is the same for all.
Route53 (route53.py) and Cloud DNS (clouddns.py) implement it; the activities (activities.py)
choose one per runbook.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from temporalio.exceptions import ApplicationError

from activities.contracts import DnsState, ErrorType, RecordWeights, ScaledWait
from activities.waits import PolledWait
from drpilot.domain.runbook import Runbook

# Provider changes normally apply within a minute; polling every 2 s (less when
# rehearsing at speed) sees it promptly at 0.5 requests/s.
POLL_SECONDS = 2.0
# After this long still pending, the attempt fails (retryable) and the retry resumes
# waiting on the same change from the heartbeat details.
WAIT_TIMEOUT_SECONDS = 600.0


@dataclass(frozen=True)
class WeightedTarget:
    """One region's part of a weighted record as the provider holds it."""

    value: str
    weight: int
    ttl: int


# record name -> region -> its weighted target (regions without one are absent)
Current = dict[str, dict[str, WeightedTarget]]


@dataclass(frozen=True)
class ChangeHandle:
    """A change a provider accepted: enough to wait on it, also from another attempt."""

    provider: str  # "route53" | "clouddns"
    zone: str  # Route53 hosted zone id | "project/managed-zone"
    change_ids: tuple[str, ...]  # more than one only when a batch had to be split
    status: str  # provider's words: PENDING / INSYNC, pending / done
    submitted: float = field(default_factory=time.time)  # epoch seconds

    def details(self, weights: Mapping[str, int]) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "zone": self.zone,
            "change_ids": list(self.change_ids),
            "status": self.status,
            "submitted": self.submitted,
            "weights": dict(weights),
        }

    @classmethod
    def from_details(cls, details: Any) -> ChangeHandle | None:
        try:
            return cls(
                provider=str(details["provider"]),
                zone=str(details["zone"]),
                change_ids=tuple(str(i) for i in details["change_ids"]),
                status=str(details["status"]),
                submitted=float(details["submitted"]),
            )
        except (KeyError, TypeError, ValueError):
            return None


Heartbeat = Callable[[ChangeHandle], None]


class DnsProvider(ABC):
    """One DNS provider's view of a runbook's weighted records."""

    name: str
    applied_status: str  # the status that means the change is served everywhere
    pending_status: str  # the status of a change not served everywhere yet
    min_poll_seconds: float = 0.2
    lists_pending: bool = False  # whether `pending` can see a zone's unapplied changes

    @abstractmethod
    def current(self, runbook: Runbook) -> Current:
        """Every runbook record's weighted targets as the provider holds them now."""

    @abstractmethod
    def apply(
        self, runbook: Runbook, weights: Mapping[str, int], current: Current | None = None
    ) -> ChangeHandle:
        """Set every record to `weights` (and the runbook's targets and TTL) in one change."""

    @abstractmethod
    def change_status(self, handle: ChangeHandle, change_id: str) -> str:
        """The provider's status of one of the handle's changes."""

    def refresh(self, handle: ChangeHandle) -> ChangeHandle:
        """The handle with the provider's current status of its change(s): applied only
        once every one of them is."""
        statuses = [self.change_status(handle, change_id) for change_id in handle.change_ids]
        applied = all(s == self.applied_status for s in statuses)
        status = self.applied_status if applied else self.pending_status
        return ChangeHandle(handle.provider, handle.zone, handle.change_ids, status, handle.submitted)

    def pending(self, runbook: Runbook) -> list[ChangeHandle]:
        """Changes to the runbook's zone that are not applied yet (when the API can tell)."""
        return []

    def prepare(self, runbook: Runbook) -> None:  # noqa: B027 - optional: most providers keep nothing
        """Find now what every read of the runbook needs and the provider keeps (its zone),
        so that a first read is as quick as the next."""

    def read(self, runbook: Runbook) -> DnsState:
        current = self.current(runbook)
        return DnsState(
            records=[
                RecordWeights(
                    name=record.name,
                    weights={
                        region: current.get(record.name, {}).get(region, ABSENT).weight
                        for region in runbook.regions
                    },
                )
                for record in runbook.spec.dns.records
            ]
        )

    def matches(self, runbook: Runbook, weights: Mapping[str, int], current: Current) -> bool:
        """True when every record already points every region at its target with `weights`."""
        for record in runbook.spec.dns.records:
            held = current.get(record.name, {})
            for region in runbook.regions:
                want = WeightedTarget(record.targets[region], weights.get(region, 0), record.ttl)
                have = held.get(region)
                if have is None or normal(have.value) != normal(want.value):
                    return False
                if (have.weight, have.ttl) != (want.weight, want.ttl):
                    return False
        return True

    def wait_applied(
        self,
        handle: ChangeHandle,
        heartbeat: Heartbeat,
        speed: float = 1.0,
        timeout: float = WAIT_TIMEOUT_SECONDS,
    ) -> tuple[ChangeHandle, list[ScaledWait]]:
        """Poll until the change is applied, heartbeating each status; retryable on timeout.
        Also how long it was pending, for a rehearsal's RTO projection."""
        interval = max(self.min_poll_seconds, POLL_SECONDS / speed)
        deadline = time.monotonic() + timeout / speed
        wait = PolledWait("dns-pending", speed, POLL_SECONDS, time.monotonic() - (time.time() - handle.submitted))
        while True:
            handle = self.refresh(handle)
            heartbeat(handle)
            if handle.status == self.applied_status:
                return handle, wait.done()
            wait.pending()
            if time.monotonic() >= deadline:
                raise ApplicationError(
                    f"{self.name} change {', '.join(handle.change_ids)} in zone {handle.zone} "
                    f"is still {handle.status} after {timeout / speed:.0f}s; the retry keeps "
                    "waiting on the same change",
                    type=ErrorType.DNS_CHANGE_PENDING,
                )
            time.sleep(interval)


ABSENT = WeightedTarget(value="", weight=0, ttl=0)


def normal(value: str) -> str:
    """DNS names compare case-insensitively and with or without the root dot."""
    return value.strip().lower().rstrip(".")


def records_text(runbook: Runbook) -> str:
    return ", ".join(f"{r.name} ({r.type})" for r in runbook.spec.dns.records)

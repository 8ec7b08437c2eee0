"""The probe activities (PROBES_WARMUP, PROBES_HEALTH, PROBES_ANALYSE) and where they dial.

All three talk to the region's own endpoint (the runbook's `regions.R.endpoint`, bypassing
global DNS) and, when the runbook gives one, the region's Prometheus. In the sandbox both
URLs are rewritten to loopback through `settings.providers.endpoint_map` / `prometheus_map`.
What each does is in warmup.py, gate.py and analysis.py.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Self

import httpx
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.contracts import (
    PROBES_ANALYSE,
    PROBES_HEALTH,
    PROBES_WARMUP,
    AnalyseInput,
    AnalyseResult,
    ErrorType,
    HealthInput,
    HealthResult,
    WarmupInput,
    WarmupResult,
)
from activities.probes.analysis import Analysis
from activities.probes.gate import HealthGate
from activities.probes.warmup import warm_up
from drpilot.domain.runbook import Runbook
from drpilot.domain.settings import Settings


class ProbeActivities:
    def __init__(
        self,
        http: httpx.Client,
        *,
        endpoint_map: Mapping[str, str] | None = None,
        prometheus_map: Mapping[str, str] | None = None,
    ):
        self.http = http
        self.endpoint_map = {k.rstrip("/"): v.rstrip("/") for k, v in (endpoint_map or {}).items()}
        self.prometheus_map = {k.rstrip("/"): v.rstrip("/") for k, v in (prometheus_map or {}).items()}

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        return cls(
            httpx.Client(timeout=30.0, follow_redirects=True),
            endpoint_map=settings.providers.endpoint_map,
            prometheus_map=settings.providers.prometheus_map,
        )

    def all(self) -> list[Callable[..., Any]]:
        return [self.warmup, self.health_gate, self.analyse]

    def endpoint(self, runbook: Runbook, region: str) -> str:
        url = _region(runbook, region).endpoint.rstrip("/")
        return self.endpoint_map.get(url, url)

    def prometheus(self, runbook: Runbook, region: str) -> str | None:
        url = _region(runbook, region).prometheus
        if url is None:
            return None
        url = url.rstrip("/")
        return self.prometheus_map.get(url, url)

    @activity.defn(name=PROBES_WARMUP)
    def warmup(self, input: WarmupInput) -> WarmupResult:
        return warm_up(self.http, self.endpoint(input.runbook, input.region), input)

    @activity.defn(name=PROBES_HEALTH)
    def health_gate(self, input: HealthInput) -> HealthResult:
        base = self.endpoint(input.runbook, input.region)
        return HealthGate(self.http, base, self.prometheus(input.runbook, input.region)).run(input)

    @activity.defn(name=PROBES_ANALYSE)
    def analyse(self, input: AnalyseInput) -> AnalyseResult:
        base = self.endpoint(input.runbook, input.region)
        return Analysis(self.http, base, self.prometheus(input.runbook, input.region)).run(input)


def _region(runbook: Runbook, region: str):
    try:
        return runbook.spec.regions[region]
    except KeyError:
        raise ApplicationError(
            f"region {region!r} is not in runbook {runbook.name}; its regions are "
            f"{', '.join(sorted(runbook.spec.regions))}",
            type=ErrorType.UNKNOWN_REGION,
            non_retryable=True,
        ) from None

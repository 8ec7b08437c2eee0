"""What a drill reads and writes beside the failover and failback it runs: its blocking
conditions before it starts and while it soaks (the alerts named in
`guardrails.blocking_alerts` firing in Alertmanager, the PromQL of
`guardrails.blocking_queries` returning a series in Prometheus), and its evidence pack in S3
or Cloud Storage (`spec.drills.evidence`), which outlives Temporal's retention (`drpilot drill history` reads it back).

Reading them is read-only and retried; an Alertmanager or Prometheus that cannot be read, or
a query it refuses, is an error, never "nothing is firing": a drill that cannot see its
blocking conditions does not start.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any, Self

import httpx
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.artifacts.gcs import gcs_client
from activities.artifacts.objects import Location
from activities.artifacts.stores import build_stores
from activities.contracts import (
    DRILL_ALERTS,
    DRILL_EVIDENCE,
    DRILL_LAST,
    ErrorType,
    EvidenceInput,
    EvidenceResult,
    FiringAlerts,
    FiringAlertsInput,
    LastDrill,
    LastDrillInput,
    MeasuredColdStart,
)
from activities.credentials import Rotating, aws_config
from activities.probes.prometheus import PromError, instant_query
from drpilot.domain.runbook import Runbook
from drpilot.domain.settings import Settings

TIMEOUT_SECONDS = 10.0


def firing_names(alerts: list[dict[str, Any]], wanted: list[str]) -> list[str]:
    """Names in `wanted` among Alertmanager's alerts that fire (not silenced or inhibited)."""
    found = set()
    for alert in alerts:
        # "unprocessed": just received, not yet matched against silences; firing until told otherwise.
        state = (alert.get("status") or {}).get("state", "active")
        name = (alert.get("labels") or {}).get("alertname", "")
        if state != "suppressed" and name in wanted:
            found.add(name)
    return sorted(found)


# How many of the newest packs are searched for a measured cold start (each is one GET).
COLD_START_PACKS = 20


def _measured(pack: dict[str, Any]) -> MeasuredColdStart | None:
    """The cold starts a drill's failover measured, from its pack (None: none, or not readable)."""
    failover = pack.get("failover") or {}
    if not isinstance(failover, dict) or not failover.get("cold_starts"):
        return None
    try:
        return MeasuredColdStart(
            drill_id=pack.get("drill_id", ""), at=pack["started_at"], speed=failover.get("speed", 1.0),
            cold_starts=failover["cold_starts"],
        )
    except (KeyError, ValueError):  # a pack of another shape: no measurement to use
        return None


class DrillActivities:
    def __init__(
        self, s3: Any, settings: Settings, http: httpx.Client | None = None, gcs: Callable[[], Any] | None = None
    ):
        """`gcs` builds the Cloud Storage client (evidence under gs://), at its first use."""
        self._stores = build_stores(s3, gcs or (lambda: gcs_client(settings)))
        self._settings = settings
        self._http = http or httpx.Client(timeout=TIMEOUT_SECONDS)

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        import boto3

        # AWS_ENDPOINT_URL(_S3) and credentials come from the environment, as boto3 reads them.
        return cls(Rotating(lambda: boto3.session.Session().client("s3", config=aws_config())), settings)

    def all(self) -> list[Callable]:
        return [self.firing_alerts, self.write_evidence, self.last_completed]

    @activity.defn(name=DRILL_ALERTS)
    def firing_alerts(self, input: FiringAlertsInput) -> FiringAlerts:
        rb = input.runbook
        firing: list[str] = []
        sources: list[str] = []
        if rb.spec.guardrails.blocking_alerts:
            source, names = self._alerts(rb)
            firing += names
            sources.append(source)
        if rb.spec.guardrails.blocking_queries:
            source, matched = self._queries(rb)
            firing += matched
            sources.append(source)
        return FiringAlerts(firing=firing, source=" and ".join(sources), sandbox=self._settings.sandbox)

    def _queries(self, rb: Runbook) -> tuple[str, list[str]]:
        """Each blocking query that returns a series now, described with how many."""
        drills = rb.spec.drills
        url = drills.prometheus if drills else None
        if not url:
            raise ApplicationError(
                f"{rb.name}: guardrails.blocking_queries are declared but no Prometheus is named: set spec.drills.prometheus",
                type=ErrorType.DRILL_UNCONFIGURED, non_retryable=True,
            )
        url = url.rstrip("/")
        dialled = self._settings.providers.prometheus_map.get(url, url)  # the sandbox's own Prometheus
        matched = []
        for expr in rb.spec.guardrails.blocking_queries:
            try:
                kind, series = instant_query(self._http, dialled, expr)
            except PromError as exc:
                if exc.unreachable:
                    raise ApplicationError(f"cannot query {dialled}/api/v1/query: {exc}", type=ErrorType.ALERTS_UNREACHABLE) from None
                raise ApplicationError(  # Prometheus refused the expression: no retry changes that
                    f"{rb.name}: guardrails.blocking_queries: {expr!r}: Prometheus refused it: {exc}",
                    type=ErrorType.DRILL_UNCONFIGURED, non_retryable=True,
                ) from None
            if kind not in ("vector", "matrix"):
                raise ApplicationError(
                    f"{rb.name}: guardrails.blocking_queries: {expr!r} returns a {kind}, not series: "
                    "write it like an alert rule's expr (e.g. `up{job=\"inference\"} == 0`)",
                    type=ErrorType.DRILL_UNCONFIGURED, non_retryable=True,
                )
            if series:
                matched.append(f"query {expr} ({len(series)} series)")
        return url, matched

    def _alerts(self, rb: Runbook) -> tuple[str, list[str]]:
        """The blocking alerts firing now."""
        wanted = list(rb.spec.guardrails.blocking_alerts)
        drills = rb.spec.drills
        url = self._settings.providers.alertmanager_url or (drills.alertmanager if drills else None)
        if not url:
            raise ApplicationError(
                f"{rb.name}: guardrails.blocking_alerts are declared but no Alertmanager is named: set "
                "spec.drills.alertmanager (or DRPILOT_ALERTMANAGER_URL on the worker)",
                type=ErrorType.DRILL_UNCONFIGURED, non_retryable=True,
            )
        endpoint = f"{url.rstrip('/')}/api/v2/alerts"
        params: Mapping[str, str] = {"active": "true", "silenced": "false", "inhibited": "false", "unprocessed": "true"}
        try:
            response = self._http.get(endpoint, params=params)
        except httpx.HTTPError as exc:
            raise ApplicationError(f"cannot read alerts from {endpoint}: {type(exc).__name__}: {exc}", type=ErrorType.ALERTS_UNREACHABLE) from None
        if response.status_code != 200:
            raise ApplicationError(f"{endpoint} answered {response.status_code}: {response.text[:200]}", type=ErrorType.ALERTS_UNREACHABLE)
        return url, firing_names(response.json(), wanted)

    @activity.defn(name=DRILL_EVIDENCE)
    def write_evidence(self, input: EvidenceInput) -> EvidenceResult:
        drills = input.runbook.spec.drills
        if drills is None:
            raise ApplicationError(
                f"{input.runbook.name}: no spec.drills.evidence to write the drill's evidence to",
                type=ErrorType.DRILL_UNCONFIGURED, non_retryable=True,
            )
        where = Location.parse(drills.evidence)
        try:
            self._stores.put_json(where, input.name, input.body.encode())
        except ApplicationError as exc:  # the store's own words: bucket, why, and the fix
            raise ApplicationError(
                f"cannot write evidence to {where.uri(input.name)}: {exc.message}",
                type=ErrorType.EVIDENCE_UNWRITABLE, non_retryable=exc.non_retryable,
            ) from None
        return EvidenceResult(uri=where.uri(input.name))

    @activity.defn(name=DRILL_LAST)
    def last_completed(self, input: LastDrillInput) -> LastDrill:
        """Read-only: the newest pack whose drill completed, newest first (packs sort by time),
        in S3 or Cloud Storage as `drpilot drill history` reads them; and the newest of the last
        COLD_START_PACKS whose failover measured a cold start."""
        rb = input.runbook
        if rb.spec.drills is None:
            raise ApplicationError(f"{rb.name}: no spec.drills.evidence to read drills from", type=ErrorType.DRILL_UNCONFIGURED,
                                   non_retryable=True)
        evidence = Location.parse(rb.spec.drills.evidence)
        where = Location(evidence.bucket, f"{evidence.prefix}{rb.name}/", evidence.scheme)
        completed: LastDrill | None = None
        cold: MeasuredColdStart | None = None
        try:
            paths = sorted((p for p in self._stores.listed(where) if p.endswith(".json")), reverse=True)
            for n, path in enumerate(paths):
                if completed is not None and (cold is not None or n >= COLD_START_PACKS):
                    break
                try:
                    pack = json.loads(self._stores.read(where, path))
                except ValueError:  # not JSON: someone else's file, not a drill
                    continue
                if not isinstance(pack, dict):
                    continue
                if completed is None and pack.get("status") == "completed" and pack.get("ended_at"):
                    completed = LastDrill(completed_at=pack["ended_at"], drill_id=pack.get("drill_id", ""), uri=where.uri(path))
                if cold is None and n < COLD_START_PACKS:
                    cold = _measured(pack)
        except ApplicationError as exc:  # the store's: no such bucket, no credentials, endpoint down; retried
            raise ApplicationError(f"cannot read drills from {where.uri()}: {exc.message}",
                                   type=ErrorType.EVIDENCE_UNREADABLE) from None
        return (completed or LastDrill()).model_copy(update={"cold_start": cold})

"""What a drill reads and writes beside the failover and failback it runs: its blocking
conditions before it starts and while it soaks (the alerts named in
`guardrails.blocking_alerts` firing in Alertmanager, the PromQL of
`guardrails.blocking_queries` returning a series in Prometheus), and its evidence pack in S3,
which outlives Temporal's retention (`drpilot drill history` reads it back).

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
)
from activities.credentials import Rotating
from activities.probes.prometheus import PromError, instant_query
from drpilot.domain.runbook import Runbook
from drpilot.domain.settings import Settings

TIMEOUT_SECONDS = 10.0


def split_s3_uri(uri: str) -> tuple[str, str]:
    """s3://bucket/a/b/ -> ("bucket", "a/b/"); the prefix ends in "/" unless empty."""
    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    return bucket, (prefix.rstrip("/") + "/" if prefix.strip("/") else "")


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


class DrillActivities:
    def __init__(self, s3: Any, settings: Settings, http: httpx.Client | None = None):
        self._s3 = s3
        self._settings = settings
        self._http = http or httpx.Client(timeout=TIMEOUT_SECONDS)

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        import boto3

        # AWS_ENDPOINT_URL(_S3) and credentials come from the environment, as boto3 reads them.
        return cls(Rotating(lambda: boto3.session.Session().client("s3")), settings)

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
        bucket, prefix = split_s3_uri(drills.evidence)
        key = f"{prefix}{input.name}"
        try:
            self._s3.put_object(Bucket=bucket, Key=key, Body=input.body.encode(), ContentType="application/json")
        except Exception as exc:  # botocore's errors: the text names the bucket and why
            code = getattr(exc, "response", {}).get("Error", {}).get("Code", "")
            permanent = code in ("NoSuchBucket", "AccessDenied", "InvalidBucketName")
            raise ApplicationError(
                f"cannot write evidence to s3://{bucket}/{key}: {exc}", type=ErrorType.EVIDENCE_UNWRITABLE, non_retryable=permanent
            ) from None
        return EvidenceResult(uri=f"s3://{bucket}/{key}")

    @activity.defn(name=DRILL_LAST)
    def last_completed(self, input: LastDrillInput) -> LastDrill:
        """Read-only: the newest pack whose drill completed, newest first (packs sort by time)."""
        rb = input.runbook
        if rb.spec.drills is None:
            raise ApplicationError(f"{rb.name}: no spec.drills.evidence to read drills from", type=ErrorType.DRILL_UNCONFIGURED,
                                   non_retryable=True)
        bucket, prefix = split_s3_uri(rb.spec.drills.evidence)
        try:
            for key in reversed(evidence_keys(self._s3, bucket, f"{prefix}{rb.name}/")):
                body = self._s3.get_object(Bucket=bucket, Key=key)["Body"].read()
                try:
                    pack = json.loads(body)
                except ValueError:  # not JSON: someone else's file, not a drill
                    continue
                if isinstance(pack, dict) and pack.get("status") == "completed" and pack.get("ended_at"):
                    return LastDrill(completed_at=pack["ended_at"], drill_id=pack.get("drill_id", ""), uri=f"s3://{bucket}/{key}")
        except Exception as exc:  # botocore: no such bucket, no credentials, endpoint down; retried
            raise ApplicationError(f"cannot read drills from s3://{bucket}/{prefix}{rb.name}/: {exc}",
                                   type=ErrorType.EVIDENCE_UNREADABLE) from None
        return LastDrill()


def evidence_keys(s3: Any, bucket: str, prefix: str) -> list[str]:
    """The evidence packs under `prefix`, oldest first (their names begin with the drill's start time)."""
    keys: list[str] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys += [o["Key"] for o in page.get("Contents", []) if o["Key"].endswith(".json")]
    return sorted(keys)

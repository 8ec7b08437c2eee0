"""The health gate: rounds of a region's checks until enough pass in a row, or time is up.

A round is the runbook's HTTP checks, the readiness of every model version the region
serves, and its Prometheus checks. A gate that does not pass in time is a verdict, not an
error: it returns passed=False with the evidence per check and a summary naming the region,
and the workflow decides. A rehearsal shortens the pauses between rounds, never a request
(clock.py).
"""

from __future__ import annotations

import time
from urllib.parse import quote

import httpx
from temporalio import activity

from activities.contracts import CheckEvidence, HealthInput, HealthResult
from activities.probes.clock import RehearsalClock
from activities.probes.prometheus import PromError, prom_check
from activities.probes.sending import RegionProbe, describe, error_text
from drpilot.domain.measurement import health_needs, rehearsed_length
from drpilot.domain.runbook import Runbook

# A rehearsal's health gate counts requests at their real duration (see RehearsalClock);
# in real time it still ends this long after its scaled timeout at the latest, inside the
# activity's start-to-close timeout (the scaled timeout + 60 s, workflows/calls.py).
GATE_REAL_SLACK_SECONDS = 30.0
# Per request of the model-version readiness check (the runbook's HTTP checks set their own).
VERSION_CHECK_TIMEOUT_SECONDS = 5.0


def version_paths(runbook: Runbook, region: str) -> list[str]:
    """KServe v2 model-version readiness of every model the region serves: the version the
    runbook names is the one the pods loaded (pods that started before the artifacts were
    right serve without it). 200 is ready; 404 is "not loaded"; 503 "server not ready"."""
    return [
        f"/v2/models/{quote(model.name, safe='')}/versions/{quote(model.version, safe='')}/ready"
        for model in runbook.spec.models
        if region in model.artifacts
    ]


def versions_ready(http: httpx.Client, base: str, paths: list[str]) -> bool:
    """Every one of `paths` answers 200 now."""
    try:
        return all(http.get(base + p, timeout=VERSION_CHECK_TIMEOUT_SECONDS).status_code == 200 for p in paths)
    except httpx.HTTPError:
        return False


class HealthGate(RegionProbe):
    """The gate of one region."""

    def run(self, input: HealthInput) -> HealthResult:
        runbook, region, speed = input.runbook, input.region, input.speed
        health = runbook.spec.health
        interval = health.interval.total_seconds()  # simulated seconds, as the timeout
        timeout = health.timeout.total_seconds()
        clock = RehearsalClock(speed)
        real_limit = timeout / speed + (GATE_REAL_SLACK_SECONDS if speed != 1 else 0.0)
        rounds = consecutive = 0
        needed = input.rounds or health.consecutive
        # Prometheus judges in real time: at rehearsal speed the gate does not give up before
        # its checks' ranges could hold only what came after the gate began (measurement.py).
        measured = rehearsed_length(timeout, speed, health_needs(runbook.spec))
        held = 0.0
        rounds_after_hold = 0
        last_failure: dict[str, CheckEvidence] = {}

        def verdict(passed: bool, evidence: list[CheckEvidence], summary: str = "") -> HealthResult:
            return HealthResult(
                region=region,
                passed=passed,
                rounds=rounds,
                consecutive=consecutive,
                seconds=round(clock.real(), 3),
                evidence=evidence,
                summary=summary,
                waits=clock.waits(),
            )

        while True:
            round_started = clock.elapsed()
            # A probe never outlives the gate by more than a moment.
            left = min(timeout - round_started, real_limit - clock.real())
            if held:  # the rounds after a hold have their own time, as at speed 1
                left = GATE_REAL_SLACK_SECONDS
            evidence = self._round(runbook, region, left)
            rounds += 1
            consecutive = consecutive + 1 if all(e.passed for e in evidence) else 0
            last_failure.update({e.check: e for e in evidence if not e.passed})
            details = {
                "round": rounds,
                "consecutive": consecutive,
                "needed": needed,
                "evidence": [e.model_dump() for e in evidence],
            }
            activity.heartbeat(details)
            if consecutive >= needed:
                return verdict(True, evidence)
            next_round = round_started + interval
            # A short check (input.rounds) gets no more rounds than it needs passing.
            short = input.rounds is not None and rounds >= input.rounds
            if held:
                rounds_after_hold += 1
                time_up = rounds_after_hold >= needed
            else:
                time_up = next_round > timeout or clock.real() + interval / speed > real_limit
            if time_up and not short and not held and clock.real() < measured:
                # Time is up at this speed, but not for Prometheus: hold until its ranges
                # cover only the gate's own time, then give the gate its rounds once more.
                held = measured - clock.real()
                clock.hold(held, {**details, "waiting_for": "prometheus ranges", "seconds": round(held, 3)})
                continue
            if short or time_up:
                failing = "; ".join(f"{e.check}: {e.observed}" for e in last_failure.values())
                rehearsal = f" (rehearsal at speed {speed:g}: waits ÷{speed:g}, requests at their real time"
                if held:
                    rehearsal += f"; held {measured:g}s of real time for the Prometheus checks' ranges"
                rehearsal += ")"
                summary = (
                    f"region {region} did not pass its health gate: {needed} consecutive "
                    f"passing rounds needed within {timeout:g}s"
                    f"{rehearsal if speed != 1 else ''}, got {consecutive} "
                    f"after {rounds} rounds. Last failing evidence: {failing}. Fix the region "
                    f"(pods, model artifacts) or raise spec.health.timeout if it is only slow."
                )
                activity.logger.warning(summary)
                # A failed gate is a verdict, not an error: the workflow decides (retrying
                # the activity would only repeat the same wait).
                return verdict(False, evidence, summary)
            clock.wait(next_round - clock.elapsed(), details)

    def _round(self, runbook: Runbook, region: str, left: float) -> list[CheckEvidence]:
        """One round of checks; `left` is the gate's time left, which requests spend at
        their real duration."""
        health = runbook.spec.health
        deadline = time.monotonic() + left
        evidence = []
        for check in health.http:
            evidence.append(
                self._status_check(self.base + check.path, f"GET {check.path}", check.expect, check.timeout.total_seconds(), deadline)
            )
        for path in version_paths(runbook, region):
            evidence.append(self._status_check(self.base + path, f"GET {path}", 200, VERSION_CHECK_TIMEOUT_SECONDS, deadline))
        for check in health.prometheus:
            try:
                evidence.append(prom_check(self.http, self.prom, check, region))
            except PromError as exc:  # the gate keeps polling; the timeout decides
                evidence.append(CheckEvidence(check=check.name, passed=False, observed=str(exc)))
        return evidence

    def _status_check(self, url: str, name: str, expect: int, per_request: float, deadline: float) -> CheckEvidence:
        # A probe never outlives the gate by more than a moment.
        timeout = min(per_request, max(deadline - time.monotonic(), 0.5))
        try:
            response = self.http.get(url, timeout=timeout)
        except httpx.HTTPError as exc:
            return CheckEvidence(check=name, passed=False, observed=error_text(exc))
        ok = response.status_code == expect
        return CheckEvidence(check=name, passed=ok, observed=describe(response) + ("" if ok else f" (expected {expect})"))

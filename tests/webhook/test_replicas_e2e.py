"""Two webhook replicas behind one real Alertmanager (Debian prometheus-alertmanager) share one
circuit breaker and one cooldown: admission holds both (AdmissionWorkflow.claim_guarded).

Real processes all the way: two `drpilot webhook serve` (one rules file, each its own loopback
port and bearer token from DRPILOT_WEBHOOK_TOKEN), one `drpilot worker`, and the in-process twin's
Temporal dev server and moto, whose Route 53 zone holds the records of two copies of
runbooks/llm-inference.yaml (the webhooks read live DNS through the product's provider code).
Alertmanager sends each alert to the replica its `replica` label names (a child route per
replica), so each replica alone stays under the cap. What happened is read from outside the
processes: each webhook's /metrics and Temporal.

1. One alert per copy, each at its own replica, `circuit_breaker: max_runs: 1`: exactly one run
   starts; the other replica's alert is notify-only `circuit_breaker`, and Temporal never saw
   its run.
2. The run waits for approval (approvals.failover: when-auto-triggered) and aborts when the
   approval times out (10m at SPEED). Once admission recorded its end, an alert for the same
   runbook at the OTHER replica is notify-only `cooldown` (guardrails.cooldown 30m): the other
   process never saw the run end, admission did.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

import httpx
import pytest
import yaml
from drpilot_twin.aws.route53 import seed_route53
from drpilot_twin.faults import Faults
from drpilot_twin.processes import Alertmanager, alertmanager_binary
from prometheus_client.parser import text_string_to_metric_families
from temporalio.service import RPCError, RPCStatusCode

from drpilot.domain.runbook import Runbook
from drpilot.domain.settings import load_settings
from drpilot.frontdoor.ports import free_loopback_port
from drpilot.frontdoor.temporal import connect
from tests.support.aws import aws_client
from tests.support.paths import DRPILOT, ROUTE53_RUNBOOK
from tests.support.runbooks import renamed
from tests.support.webhook import TOKEN
from workflows import admission
from workflows.types import AdmissionState, workflow_id

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(alertmanager_binary() is None, reason="prometheus-alertmanager not installed (make setup)"),
]
LOST = "us-east-1"
SPEED = 300  # the approval's 10m timeout passes in 2 s: the run ends, and its cooldown begins
T = TypeVar("T")


class RoutedAlertmanager(Alertmanager):
    """Alertmanager sending each alert to the webhook URL its `replica` label names (a child
    route per replica, one receiver each); one group per runbook."""

    def __init__(self, state_dir: Path, replicas: dict[str, str], *, token: str):
        self.replicas = replicas
        super().__init__(state_dir, next(iter(replicas.values())), token=token, group_wait="0s", group_interval="1s")

    def config(self) -> dict:
        config = super().config()
        config["route"]["group_by"].append("drpilot_runbook")
        webhook = config["receivers"][0]["webhook_configs"][0]
        config["route"]["routes"] = [{"matchers": [f'replica="{name}"'], "receiver": name} for name in self.replicas]
        config["receivers"] += [{"name": name, "webhook_configs": [{**webhook, "url": url}]} for name, url in self.replicas.items()]
        return config


def rules_file(copies: list[Runbook], directory: Path) -> Path:
    """One rule per copy (the copies' files sit next to it); at most one run an hour."""
    rules = {
        "apiVersion": "drpilot/v1",
        "kind": "WebhookRules",
        "circuit_breaker": {"max_runs": 1, "window": "1h"},
        "rules": [
            {
                "name": f"{rb.name}-region-down",
                "match": ['alertname="RegionDown"', f'drpilot_runbook="{rb.name}"'],
                "runbook": f"{rb.name}.yaml",
                "strategy": "ungraceful",  # preflight, then the approval the run waits at
                "for": "0s",
            }
            for rb in copies
        ],
    }
    path = directory / "rules.yaml"
    path.write_text(yaml.safe_dump(rules, sort_keys=False))
    return path


async def until(check: Callable[[], Awaitable[T]], what: str, timeout: float = 30.0) -> T:
    """Poll `check` until it returns something truthy, and return that."""
    try:
        async with asyncio.timeout(timeout):
            while not (found := await check()):
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"timed out after {timeout:g}s waiting for {what}") from None
    return found


class Replica:
    """One `drpilot webhook serve` process, read from outside through its /metrics."""

    def __init__(self, name: str, rules: Path, env: dict[str, str], log: Path):
        self.name = name
        self.url = f"http://127.0.0.1:{free_loopback_port()}"
        port = self.url.rsplit(":", 1)[1]
        with log.open("wb") as stderr:
            self.process = subprocess.Popen(
                [str(DRPILOT), "webhook", "serve", "--rules", str(rules), "--host", "127.0.0.1", "--port", port],
                env=env, stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True,
            )

    async def ready(self, http: httpx.AsyncClient) -> bool:
        assert self.process.poll() is None, f"webhook {self.name} exited {self.process.returncode}"
        try:
            return (await http.get(f"{self.url}/readyz")).status_code == 200
        except httpx.TransportError:
            return False

    async def counters(self, http: httpx.AsyncClient) -> dict[tuple[str, frozenset], float]:
        text = (await http.get(f"{self.url}/metrics")).text
        return {
            (sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples
        }


def count(counters: dict[tuple[str, frozenset], float], name: str, **labels: str) -> float:
    return counters.get((name, frozenset(labels.items())), 0.0)


def refused(counters: dict[tuple[str, frozenset], float], reason: str) -> float:
    return count(counters, "drpilot_webhook_alerts_refused_total", outcome="notify-only", reason=reason)


def stop(process: subprocess.Popen) -> None:
    """Its whole process group: SIGTERM, then SIGKILL if it lingers."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)


async def test_two_webhook_processes_behind_one_alertmanager_share_the_breaker_and_the_cooldown(twin_factory, tmp_path):
    fleet = tmp_path / "fleet"
    fleet.mkdir()
    twin = twin_factory(ROUTE53_RUNBOOK, temporal=True, speed=SPEED, faults=Faults(region_down=frozenset({LOST})))
    copies = [renamed(fleet, "chat"), renamed(fleet, "embed")]
    route53 = aws_client("route53", twin.moto.url)
    for rb in copies:
        seed_route53(route53, rb)
    rules = rules_file(copies, fleet)
    env = {**os.environ, **twin.env(), "DRPILOT_WEBHOOK_TOKEN": TOKEN}
    children: list[subprocess.Popen] = []
    am: RoutedAlertmanager | None = None
    try:
        with (tmp_path / "worker.log").open("wb") as log:
            children.append(subprocess.Popen([str(DRPILOT), "worker"], env=env, stdout=subprocess.DEVNULL, stderr=log,
                                             start_new_session=True))
        replicas = [Replica(name, rules, env, tmp_path / f"webhook-{name}.log") for name in ("one", "two")]
        children += [r.process for r in replicas]
        am = RoutedAlertmanager(tmp_path / "alertmanager", {r.name: f"{r.url}/v1/alertmanager" for r in replicas}, token=TOKEN)
        await asyncio.to_thread(am.start)
        settings = load_settings(env)
        client = await connect(settings.temporal)
        async with httpx.AsyncClient(timeout=30) as http:

            async def fire(runbook: str, replica: Replica) -> None:
                starts = (datetime.now(UTC) - timedelta(minutes=5)).isoformat()
                labels = {"alertname": "RegionDown", "drpilot_runbook": runbook, "region": LOST, "replica": replica.name}
                sent = await http.post(f"{am.url}/api/v2/alerts", json=[{"labels": labels, "startsAt": starts}])
                assert sent.status_code == 200, sent.text

            async def decided(replica: Replica, rule: str) -> dict[tuple[str, frozenset], float]:
                counters = await replica.counters(http)
                return counters if count(counters, "drpilot_webhook_alerts_matched_total", rule=rule) else {}

            for replica in replicas:
                await until(lambda replica=replica: replica.ready(http), f"webhook {replica.name} ready")
            for rb, replica in zip(copies, replicas, strict=True):
                await fire(rb.name, replica)
            seen = [
                await until(lambda r=replica, rb=rb: decided(r, f"{rb.name}-region-down"), f"webhook {replica.name} deciding")
                for rb, replica in zip(copies, replicas, strict=True)
            ]
            started = [count(c, "drpilot_webhook_runs_started_total", runbook=rb.name) for c, rb in zip(seen, copies, strict=True)]
            assert sorted(started) == [0, 1], started  # at most 1 an hour, across both replicas
            assert [refused(c, "circuit_breaker") for c in seen] == [1 - s for s in started]
            winner, loser = (0, 1) if started[0] else (1, 0)
            with pytest.raises(RPCError) as never:  # the refused alert's run never reached Temporal
                await client.get_workflow_handle(workflow_id("failover", copies[loser].name)).describe()
            assert never.value.status == RPCStatusCode.NOT_FOUND, never.value

            # The run aborts at its approval timeout; admission records its end ...
            queue = admission.workflow_id(settings.temporal.task_queue)

            async def ended() -> bool:
                state = await client.get_workflow_handle(queue).query("state", result_type=AdmissionState)
                return copies[winner].name in state.last_ended

            await until(ended, f"admission recording the end of {workflow_id('failover', copies[winner].name)}")
            # ... and the same runbook's next alert, at the replica that never saw its run, is held.
            other = replicas[loser]
            await fire(copies[winner].name, other)
            counters = await until(lambda: decided(other, f"{copies[winner].name}-region-down"), "the cooldown decision")
            why = {dict(labels)["reason"]: n for (name, labels), n in counters.items() if name == "drpilot_webhook_alerts_refused_total"}
            assert refused(counters, "cooldown") == 1, why  # not circuit_breaker: admission saw the run end
            assert count(counters, "drpilot_webhook_runs_started_total", runbook=copies[winner].name) == 0
            now = [await r.counters(http) for r in replicas]
            assert sum(count(c, "drpilot_webhook_runs_started_total", runbook=rb.name) for c in now for rb in copies) == 1
    finally:
        if am is not None:
            await asyncio.to_thread(am.stop)
        for child in children:
            stop(child)

"""Worker loss per phase (issue 22): two workers serve a failover and its failback; in each
phase, the worker doing the run's work is SIGKILLed (a new one started, so two keep running).

The worker doing the work is the one running the run's activity, else the one that completed
its last workflow task (its sticky queue holds the run). Per kill:
- taken over: from the kill to the other worker moving the phase on: the killed activity
  started again on another worker (its next attempt), or, when the killed worker held only the
  workflow, a workflow task completed by another worker (Temporal's own timestamps);
- phase delay: the phase's length in the run with the kill less its median in clean runs (and
  less the take-overs of other kills inside it: warm-up and health-gate run inside restore).

One twin (runbooks/llm-inference.yaml) at BENCH_WORKER_LOSS_SPEED, the failover at
BENCH_WORKER_LOSS_FAILOVER_SPEED (its phases are too short to hit otherwise); a clean failover + failback
first (the phases to hit and their clean lengths), then BENCH_WORKER_LOSS_ROUNDS pairs with one
kill per phase. A phase shorter than the poll (50 ms) may be missed: its kill count says so.
`python -m bench.worker_loss` prints the rows; `make bench-fleet` puts them in BENCHMARKS.md.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from drpilot_twin.twin import Twin
from temporalio.api.enums.v1 import EventType, PendingActivityState
from temporalio.client import WorkflowExecutionStatus

from bench.chaos import AWAY, HOME
from bench.evacuation import BASE
from bench.stats import percentile
from bench.workers import Replaced
from drpilot.domain.loader import load_runbook
from drpilot.domain.settings import load_settings
from drpilot.frontdoor.runs import progress, result, start
from drpilot.frontdoor.temporal import connect
from workflows.types import FailbackInput, FailoverInput

SPEED = float(os.environ.get("BENCH_WORKER_LOSS_SPEED", "300"))
# The failover's phases last a fraction of a second at SPEED; at this one they last long enough
# for a kill to land in each (its TTL and gate waits; the twin's providers stay at SPEED).
FAILOVER_SPEED = float(os.environ.get("BENCH_WORKER_LOSS_FAILOVER_SPEED", "30"))
ROUNDS = int(os.environ.get("BENCH_WORKER_LOSS_ROUNDS", "1"))
RUN_TIMEOUT = 300.0
STARTED = PendingActivityState.PENDING_ACTIVITY_STATE_STARTED
ENDED = {  # event type -> its attributes' field
    EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED: "activity_task_completed_event_attributes",
    EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED: "activity_task_failed_event_attributes",
    EventType.EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT: "activity_task_timed_out_event_attributes",
    EventType.EVENT_TYPE_ACTIVITY_TASK_CANCELED: "activity_task_canceled_event_attributes",
}

WORKER_LOSS_HEADER = [
    "## Worker loss: a SIGKILLed worker per phase of a failover and a failback",
    "",
    "`python -m bench.worker_loss` (also part of `make bench-fleet`, not of `make bench`: one round takes",
    "about 7 minutes; `BENCH_WORKER_LOSS_ROUNDS`,",
    "`BENCH_WORKER_LOSS_SPEED`, `BENCH_WORKER_LOSS_FAILOVER_SPEED`): `runbooks/llm-inference.yaml`, the twin and",
    f"the failback at speed {SPEED:g}, the failover at {FAILOVER_SPEED:g} (its phases last long enough to hit), two workers. In each phase",
    "the worker doing the run's work (running its activity, else holding its workflow) is",
    "SIGKILLed and a new one started. Taken over: kill -> the killed activity's next attempt",
    "started on the other worker (or, for a workflow-only kill, a workflow task completed there).",
    "Phase delay: the phase's length with the kill less its clean median and less other kills'",
    "take-overs inside it (rehearsal or not, a kill's cost is real time: it does not scale with the speed).",
    "",
    "| run | phase | kills | taken over p50 / p95 | phase delay p50 / p95 |",
    "| --- | --- | --- | --- | --- |",
]
WORKER_LOSS_NOTE = [
    "An activity of a lost worker is retried once its heartbeat timeout passes: 10 s since",
    "0.4.0 (`workflows/calls.py` HEARTBEAT, 60 s before, 120 s for the archive restore and the",
    "sync, and none for short calls, which waited out their start-to-close). The worker keeps",
    "every running activity heartbeating from its event loop (`drpilot/frontdoor/keepalive.py`),",
    "so a provider call that blocks longer than that is no timeout, and every provider call is",
    "bounded. A workflow task on a lost worker's sticky queue moves to any worker after 3 s",
    "(`drpilot/frontdoor/worker.py` STICKY_SECONDS); one started on it when it died, after the",
    "run's workflow task timeout (10 s). Issue 22's target: a phase delayed by at most 20 s at p95.",
]


@dataclass
class Kill:
    action: str
    phase: str
    what: str  # "activity NAME" or "workflow task"
    taken_over: float
    at: float  # the kill's time (time.time())
    delay: float | None = None


async def _events(handle) -> list:
    return [e async for e in handle.fetch_history_events()]


async def busy(handle) -> tuple[str, str, int | None, int]:
    """(identity, what, activity id, attempt) of the worker doing the run's work now."""
    for p in (await handle.describe()).raw_description.pending_activities:
        if p.state == STARTED and p.last_worker_identity:
            return p.last_worker_identity, f"activity {p.activity_type.name}", p.activity_id, p.attempt
    completed = [e for e in await _events(handle) if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED]
    return completed[-1].workflow_task_completed_event_attributes.identity, "workflow task", None, 0


async def taken_over(handle, killed: str, activity_id, attempt: int, since: float) -> float:
    """Seconds from `since` (the kill) to the other worker moving the run on: the killed
    activity's next attempt started (seen pending), or, if it was quicker than the poll, ended
    (a retried activity's started event is written when it ends, with its first start's time);
    for a workflow-only kill, or an activity that ended before the kill landed, a workflow task
    completed by another worker."""
    while True:
        described = await handle.describe()
        if activity_id is not None and all(p.activity_id != activity_id for p in described.raw_description.pending_activities):
            activity_id = None if not await _retried(handle, activity_id, attempt) else activity_id
        for p in described.raw_description.pending_activities:
            if activity_id is not None and p.activity_id == activity_id and p.attempt > attempt and p.state == STARTED:
                return p.last_started_time.ToDatetime().timestamp() - since
        events = await _events(handle)
        ours = {e.event_id for e in events if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
                and e.activity_task_scheduled_event_attributes.activity_id == activity_id}
        retried = {e.activity_task_started_event_attributes.scheduled_event_id for e in events
                   if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED
                   and e.activity_task_started_event_attributes.attempt > attempt} & ours
        for e in events:
            at = e.event_time.ToDatetime().timestamp()
            if at < since:
                continue
            if e.event_type in ENDED and getattr(e, ENDED[e.event_type]).scheduled_event_id in retried:
                return at - since
            if (activity_id is None and e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED
                    and e.workflow_task_completed_event_attributes.identity != killed):
                return at - since
        if described.status != WorkflowExecutionStatus.RUNNING:
            return (described.close_time.timestamp() if described.close_time else time.time()) - since
        await asyncio.sleep(0.1)


async def _retried(handle, activity_id: str, attempt: int) -> bool:
    """Whether the activity ran again after `attempt` (else it ended before the kill landed)."""
    events = await _events(handle)
    ours = {e.event_id for e in events if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
            and e.activity_task_scheduled_event_attributes.activity_id == activity_id}
    return any(e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED
               and e.activity_task_started_event_attributes.scheduled_event_id in ours
               and e.activity_task_started_event_attributes.attempt > attempt for e in events)


async def _run(client, settings, request, workers: Replaced | None, targets: set[str], action: str):
    """One run to its end; with `workers`, a kill in each phase of `targets`. Its outcome, kills."""
    handle = (await start(client, settings, request)).handle
    kills: list[Kill] = []
    deadline = time.monotonic() + RUN_TIMEOUT
    outcome = asyncio.create_task(result(handle))
    left = set(targets) if workers else set()
    while left and not outcome.done() and time.monotonic() < deadline:
        try:
            phase = (await progress(handle)).phase
        except Exception:  # noqa: BLE001 - no worker has answered the query yet
            phase = ""
        if phase in left:
            left.discard(phase)
            identity, what, activity_id, attempt = await busy(handle)
            since = time.time()
            await asyncio.to_thread(workers.kill, int(identity.split("@", 1)[0]))
            seconds = await taken_over(handle, identity, activity_id, attempt, since)
            kills.append(Kill(action, phase, what, seconds, since))
            print(f"worker loss: {action} {phase}: killed ({what}), taken over in {seconds:.1f} s", file=sys.stderr)
            continue
        await asyncio.sleep(0.05)
    done = await asyncio.wait_for(outcome, max(1.0, deadline - time.monotonic()))
    return done, kills


def _lengths(outcome) -> dict[str, tuple[float, float, float]]:
    """Each phase's (start, end, length): start and end in time.time() terms."""
    return {
        p.name: (p.started_at.timestamp(), p.ended_at.timestamp(), p.seconds)
        for p in outcome.phases if p.ended_at is not None and p.outcome != "skipped"
    }


async def _pair(twin: Twin, workers: Replaced, settings, targets: dict[str, set[str]] | None):
    client = await connect(settings.temporal)
    runs = []
    for action, request in (
        ("failover", FailoverInput(runbook=twin.runbook, failed_region="us-east-1", speed=FAILOVER_SPEED,
                                   reason="bench: worker loss")),
        ("failback", FailbackInput(runbook=twin.runbook, original_region="us-east-1", speed=SPEED, reason="bench: worker loss")),
    ):
        if action == "failover":
            twin.board.update(region_down=frozenset({"us-east-1"}))
        else:
            twin.board.clear()
        outcome, kills = await _run(client, settings, request, workers if targets else None,
                                    (targets or {}).get(action, set()), action)
        if outcome.status != "completed" or outcome.final_state.dns != (AWAY if action == "failover" else HOME):
            raise RuntimeError(f"{action} did not complete with traffic where it should be: {outcome.status}")
        runs.append((action, outcome, kills))
    return runs


def _p(values: list[float]) -> str:
    return f"{percentile(values, 50):.1f} / {percentile(values, 95):.1f} s" if values else "-"


def bench_worker_loss() -> list[str]:
    with tempfile.TemporaryDirectory(prefix="drpilot-worker-loss-") as tmp, \
            Twin(load_runbook(BASE), Path(tmp), speed=SPEED, prometheus=False, alertmanager=False) as twin:
        env = {**os.environ, **twin.env()}
        settings = load_settings(env)
        workers = Replaced(env, 2)
        try:
            clean: dict[str, dict[str, list[float]]] = {}
            for _ in range(2):  # the clean lengths' median; the first pair also warms the workers up
                for action, outcome, _ in asyncio.run(_pair(twin, workers, settings, None)):
                    for name, (_, _, seconds) in _lengths(outcome).items():
                        clean.setdefault(action, {}).setdefault(name, []).append(seconds)
            targets = {action: set(phases) for action, phases in clean.items()}
            kills: list[Kill] = []
            for _ in range(ROUNDS):
                for action, outcome, run_kills in asyncio.run(_pair(twin, workers, settings, targets)):
                    lengths = _lengths(outcome)
                    for kill in run_kills:
                        if kill.phase in lengths:
                            begin, end, seconds = lengths[kill.phase]
                            # A phase holding another (warm-up runs inside restore) pays for the
                            # kills in that one too: theirs are taken out.
                            inner = sum(k.taken_over for k in run_kills if k is not kill and begin <= k.at <= end)
                            kill.delay = seconds - inner - statistics.median(clean[action][kill.phase])
                    kills += run_kills
        finally:
            workers.stop()
    rows = []
    for action, phases in clean.items():
        for phase in phases:
            hit = [k for k in kills if k.action == action and k.phase == phase]
            rows.append(
                f"| {action} | {phase} | {len(hit)}/{ROUNDS} | {_p([k.taken_over for k in hit])} | "
                f"{_p([k.delay for k in hit if k.delay is not None])} |"
            )
    everything = [k.taken_over for k in kills]
    delays = [k.delay for k in kills if k.delay is not None]
    rows.append(
        f"| all | {len(kills)} kills | {len(kills)} | {_p(everything)} (max {max(everything, default=0):.1f}) | "
        f"{_p(delays)} (max {max(delays, default=0):.1f}) |"
    )
    return rows


if __name__ == "__main__":
    print("\n".join([*WORKER_LOSS_HEADER, *bench_worker_loss()]))

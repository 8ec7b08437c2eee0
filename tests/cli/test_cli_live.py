"""Live progress (`failover --wait`, the demo) as a log and as a narrow terminal reads it.

The CLI is driven end to end with Temporal replaced at its seams (connect, start, watch):
`watch` feeds the progress snapshots a run's `progress` query would, so what is checked is
exactly what `drpilot failover --wait` writes to stderr.
"""

from __future__ import annotations

import asyncio
import io
import re
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
from rich.console import Console
from typer.testing import CliRunner

from drpilot.cli import main as cli
from drpilot.cli import runs as run_commands
from drpilot.frontdoor import runs
from tests.support.paths import RUNBOOKS
from workflows.types import PhaseRecord, Progress, RunResult, WorldState

RUN_ID = "failover:llm-inference"
T0 = datetime(2026, 12, 5, 10, 0, tzinfo=UTC)
LONG = ("us-west-2 ready: 6/6 replicas of inference/llm-server, llm-7b 2024-01-15 artifacts verified "
        "in s3://models-us-west-2/llm-7b/2024-01-15/ (12 files, 13.4 GiB), p99 212ms")
REQUESTED = "failover requested by cli alice: us-east-1 down"
SWITCHED = "DNS switched: us-east-1 0%, us-west-2 100%"
RTO = "RTO 41.2s (at most 12360s at speed 1) vs objective 900s: met"


def phase(name: str, start: float, end: float | None = None, outcome: str = "running", detail: str = "") -> PhaseRecord:
    return PhaseRecord(name=name, started_at=T0 + timedelta(seconds=start), outcome=outcome, detail=detail,
                       ended_at=T0 + timedelta(seconds=end) if end is not None else None)


def progress(elapsed: float, name: str, weights: dict[str, int], target: dict[str, int], phases: list[PhaseRecord],
             messages: list[str], step: str | None = None, waiting_for=None, status=None) -> Progress:
    return Progress(run_id=RUN_ID, action="failover", runbook="llm-inference",
                    state="finished" if status else "running", status=status, phase=name, step=step,
                    weights=weights, target_weights=target, waiting_for=waiting_for, started_at=T0,
                    elapsed_seconds=elapsed, speed=300, phases=phases, messages=messages)


EAST, WEST, SPLIT = {"us-east-1": 100, "us-west-2": 0}, {"us-east-1": 0, "us-west-2": 100}, {"us-east-1": 50, "us-west-2": 50}
PREFLIGHT_DONE = phase("preflight", 0, 1.5, "ok", LONG)

# What successive polls of one failover return; some polls change nothing.
SNAPSHOTS = [
    progress(0.4, "preflight", EAST, {}, [phase("preflight", 0)], [REQUESTED]),
    progress(0.9, "preflight", EAST, {}, [phase("preflight", 0)], [REQUESTED]),  # unchanged
    progress(1.6, "approval", EAST, {}, [PREFLIGHT_DONE, phase("approval", 1.5)], [REQUESTED], waiting_for="approval"),
    progress(2.1, "approval", EAST, {}, [PREFLIGHT_DONE, phase("approval", 1.5)], [REQUESTED], waiting_for="approval"),  # unchanged
    progress(3.0, "dns-switch", EAST, SPLIT, [PREFLIGHT_DONE, phase("approval", 1.5, 2.9, "ok", "approved by bob"),
                                              phase("dns-switch", 2.9)], [REQUESTED, "approved by bob"], step="50%"),
    progress(3.5, "dns-switch", SPLIT, WEST, [PREFLIGHT_DONE, phase("approval", 1.5, 2.9, "ok", "approved by bob"),
                                              phase("dns-switch", 2.9)], [REQUESTED, "approved by bob"], step="100%"),
    progress(4.2, "finished", WEST, WEST, [PREFLIGHT_DONE, phase("approval", 1.5, 2.9, "ok", "approved by bob"),
                                           phase("dns-switch", 2.9, 4.1, "ok", "INSYNC")],
             [REQUESTED, "approved by bob", SWITCHED, RTO], status="completed"),
]
RESULT = RunResult(run_id=RUN_ID, status="completed", phases=SNAPSHOTS[-1].phases, rto_seconds=4.1,
                   objective_rto_seconds=900, final_state=WorldState(dns=WEST), speed=300, action="failover",
                   runbook="llm-inference", messages=SNAPSHOTS[-1].messages)


@pytest.fixture
def wait_for_failover(monkeypatch):
    """`drpilot failover ... --wait` with its progress written to `console`; stdout and the
    console's text. Temporal is replaced at the seams the CLI calls."""

    async def connect(_settings):
        return SimpleNamespace()

    async def start(_client, _settings, _request):
        return runs.Started(handle=SimpleNamespace(id=RUN_ID), attached=False)

    async def watch(_handle, on_progress, every=0.5):
        for p in SNAPSHOTS:
            on_progress(p)
            await asyncio.sleep(0.3)  # a terminal view redraws between polls (4 times a second)
        return RESULT

    monkeypatch.setattr("drpilot.frontdoor.temporal.connect", connect)
    monkeypatch.setattr(runs, "start", start)
    monkeypatch.setattr(runs, "watch", watch)
    for name in ("DRPILOT_SPEED", "DRPILOT_SANDBOX"):
        monkeypatch.delenv(name, raising=False)

    def run(console: Console) -> tuple[str, str]:
        monkeypatch.setattr(run_commands, "err", console)  # the run commands' stderr console
        done = CliRunner().invoke(cli.app, ["failover", str(RUNBOOKS / "llm-inference.yaml"), "--from", "us-east-1",
                                            "--yes", "--wait"])
        assert done.exit_code == 0, done.output
        return done.stdout, console.file.getvalue()

    return run


def test_without_a_terminal_each_change_is_one_whole_line_printed_once(wait_for_failover):
    stdout, log = wait_for_failover(Console(file=io.StringIO(), width=80))
    assert "\r" not in log and "\x1b" not in log
    assert log.endswith("\n")  # the next writer starts on a line of its own
    lines = log.splitlines()
    assert lines[0] == f"started {RUN_ID}"
    stamped = re.compile(r"^\d\d:\d\d:\d\dZ +\d+\.\ds  (.+)$")
    said = []
    for line in lines[1:]:
        match = stamped.match(line)
        assert match, f"not a stamped line: {line!r}"
        said.append(match.group(1))
    assert len(said) == len(set(said)), "a line repeated although nothing changed"
    expected = [
        f"{RUN_ID} running (speed 300x)",
        "phase preflight",
        "DNS us-east-1 100%, us-west-2 0%",
        f"| {REQUESTED}",
        f"preflight: ok in 1.5s: {LONG}",  # in a log, nothing is cut
        "phase approval",
        f"waiting for approval: drpilot approve {RUN_ID}",
        "approval: ok in 1.4s: approved by bob",
        "phase dns-switch, step 50%",
        "DNS us-east-1 100% -> 50%, us-west-2 0% -> 50%",
        "| approved by bob",
        "phase dns-switch, step 100%",
        "DNS us-east-1 50% -> 0%, us-west-2 50% -> 100%",
        "dns-switch: ok in 1.2s: INSYNC",
        "phase finished",
        "DNS us-east-1 0%, us-west-2 100%",
        f"| {SWITCHED}",
        f"| {RTO}",
        f"{RUN_ID} completed (speed 300x) after 4.2s",
    ]
    assert said == expected
    # The result (stdout) is its own lines too.
    assert stdout.splitlines()[0] == f"{RUN_ID}: completed; DNS us-east-1 0%, us-west-2 100%"


ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def frames(screen: str) -> list[list[str]]:
    """What a terminal showed at each redraw: rich's Live moves the cursor back up over the
    previous frame and erases its lines (ESC[2K) before writing the next one."""
    shown = []
    for chunk in re.split(r"(?:\r?\x1b\[2K(?:\x1b\[1A\x1b\[2K)*)+", screen):
        lines = [ANSI.sub("", line).rstrip("\r") for line in chunk.split("\n")]
        if any(line.strip() for line in lines):
            shown.append(lines)
    return shown


def test_a_narrow_terminal_stacks_the_facts_and_cuts_instead_of_wrapping(wait_for_failover):
    _stdout, screen = wait_for_failover(Console(file=io.StringIO(), width=60, force_terminal=True, color_system="standard"))
    shown = frames(screen)
    assert len(shown) >= 3
    for frame in shown:
        for line in frame:
            assert len(line) <= 60, line
    last = [line.rstrip() for line in shown[-1] if line.strip()]
    # The facts come first, one per line: the step and the weights are never pushed off.
    mid = next(frame for frame in shown if any("step 50%" in line for line in frame))
    assert mid[1].startswith("phase") and "dns-switch, step 50%" in mid[1], mid
    assert mid[2].split() == ["DNS", "us-east-1", "100%", "->", "50%,", "us-west-2", "0%", "->", "50%"], mid
    assert last[1].split() == ["phase", "finished"] and "us-east-1 0%, us-west-2 100%" in last[2], last
    # A long detail is one line ending in an ellipsis, not a wrapped column.
    preflight = [line for line in last if "preflight" in line]
    assert len(preflight) == 1 and preflight[0].endswith("…"), last
    assert not any(LONG[-20:] in line for line in last)


def test_the_demo_follows_a_run_with_the_same_lines(monkeypatch, capsys, tmp_path):
    """The demo's story is told through the same renderer: in a log, one stamped line per change."""
    from drpilot_twin.demo import RUNBOOK, Story

    story = Story(RUNBOOK, 300, tmp_path, keep=False)
    polls = iter([None, *SNAPSHOTS[:-1], SNAPSHOTS[-1].model_copy(update={"result": RESULT})])

    async def poll(_run_id):
        return next(polls)

    async def no_wait(_seconds):
        return None

    monkeypatch.setattr(story, "progress", poll)
    monkeypatch.setattr("drpilot_twin.demo.asyncio", SimpleNamespace(sleep=no_wait))
    assert asyncio.run(story.follow(RUN_ID)) == RESULT
    out = capsys.readouterr().out
    assert "\r" not in out and "\x1b" not in out and out.endswith("\n")
    said = [re.match(r"^    \d\d:\d\d:\d\dZ +\d+\.\ds  (.+)$", line) for line in out.splitlines()]
    assert all(said), out
    said = [match.group(1) for match in said]
    assert len(said) == len(set(said)), said
    assert "phase dns-switch, step 50%" in said and f"| {RTO}" in said


def test_a_wide_terminal_gets_a_table_that_fits_and_a_hostile_detail_stays_text():
    """From 100 columns the phases are a table; a detail quoting a provider's error (newlines,
    escape sequences) is cut and cleaned, in a terminal and in a log alike."""
    from drpilot.frontdoor.live import LogLines, render, snapshot

    hostile = SNAPSHOTS[4].model_copy(update={"phases": [phase("preflight", 0, 1.5, "failed", "boto: \x1b[31mdenied\x1b[0m\nretry " + LONG)]})
    console = Console(file=io.StringIO(), width=120, force_terminal=True, color_system=None)
    console.print(render(snapshot(hostile), 120))
    screen = console.file.getvalue()
    assert "\x1b" not in screen  # no colour asked for, and none smuggled in by the detail
    lines = screen.splitlines()
    assert all(len(line) <= 120 for line in lines), lines
    assert lines[1].split()[:2] == ["phase", "dns-switch,"] and lines[2].startswith("DNS")
    assert any(line.split()[:3] == ["phase", "outcome", "seconds"] for line in lines), lines
    log = io.StringIO()
    LogLines(log).update(snapshot(hostile))
    assert "\x1b" not in log.getvalue() and "boto:  [31mdenied [0m retry" in log.getvalue()


def test_a_drill_shows_the_step_and_weights_of_its_child_run():
    from drpilot.frontdoor.live import drill_snapshot, render
    from workflows.types import DrillResult

    drill = DrillResult(drill_id="drill:llm-inference-2026-12-05T10:00:00Z", runbook="llm-inference", mode="rehearsal",
                        from_region="us-east-1", status="running", objective_rto_seconds=900, started_at=T0,
                        phases=[phase("preflight", 0, 1, "ok"), phase("failover", 1)], speed=300)
    shown = drill_snapshot(drill, SNAPSHOTS[4], now=T0 + timedelta(seconds=5))
    assert (shown.phase, shown.step, shown.elapsed) == ("failover: dns-switch", "50%", 5.0)
    console = Console(file=io.StringIO(), width=60, force_terminal=True, color_system=None)
    console.print(render(shown, 60))
    lines = console.file.getvalue().splitlines()
    assert "failover: dns-switch, step 50%" in lines[1] and "us-east-1 100% -> 50%" in lines[2]


def test_a_phase_that_began_and_ended_between_polls_is_told_once_with_its_outcome():
    from drpilot.frontdoor.live import LogLines, snapshot

    shift = phase("shift 100%", 30, 37, "ok", "INSYNC")
    before = progress(31, "shift 100%", WEST, WEST, [shift.model_copy(update={"ended_at": None, "outcome": "running"})], [], step="100%")
    after = progress(39, "scale-down", WEST, WEST, [shift, phase("scale-down", 37, 38.5, "ok", "us-west-2 back to standby")], [], step="100%")
    log = io.StringIO()
    view = LogLines(log, clock=lambda: T0)
    view.update(snapshot(before))
    view.update(snapshot(after))
    said = [line.split("s  ", 1)[1] for line in log.getvalue().splitlines()]
    assert said[-2:] == ["shift 100%: ok in 7.0s: INSYNC", "scale-down: ok in 1.5s: us-west-2 back to standby"]
    assert "phase shift 100%" in said  # the step is in the phase's name: not said twice


def test_a_drill_between_its_child_runs_does_not_log_unknown_weights():
    from drpilot.frontdoor.live import LogLines, drill_snapshot
    from workflows.types import DrillResult

    def drill(*phases: PhaseRecord) -> DrillResult:
        return DrillResult(drill_id="drill:x", runbook="llm-inference", mode="rehearsal", from_region="us-east-1",
                           status="running", objective_rto_seconds=900, started_at=T0, phases=list(phases), speed=300)

    log = io.StringIO()
    view = LogLines(log, clock=lambda: T0)
    view.update(drill_snapshot(drill(phase("failover", 1)), SNAPSHOTS[5], now=T0))
    view.update(drill_snapshot(drill(phase("failover", 1, 3, "ok"), phase("soak", 3)), None, now=T0))
    said = [line.split("s  ", 1)[1] for line in log.getvalue().splitlines()]
    assert said == ["drill:x running (speed 300x)", "phase failover: dns-switch, step 100%",
                    "DNS us-east-1 50% -> 0%, us-west-2 50% -> 100%", "failover: ok in 2.0s", "phase soak"]


def test_a_failback_held_for_route53s_control_plane_says_why_and_how_to_leave():
    from drpilot.frontdoor.live import snapshot

    held = progress(9, "shift 10%", WEST, {"us-east-1": 10, "us-west-2": 90}, [PREFLIGHT_DONE], [], step="10%",
                    waiting_for="route53 control plane").model_copy(update={"waiting_cause": "ServiceUnavailable: Service Unavailable"})
    assert snapshot(held).hold == (
        f"held: Route53's control plane does not answer (ServiceUnavailable: Service Unavailable); goes on when it does, "
        f"drpilot abort {RUN_ID} leaves DNS as it is"
    )

"""Live progress of a run, the one renderer every front door uses (`failover/failback --wait`,
`drill run --wait`, `status`, the demo).

Two audiences, told apart by the console, never by the caller:
- an interactive terminal gets a view redrawn in place that fits its width: one line per
  fact (run, phase and step, DNS weights -> target, elapsed, what it waits for) above the
  phases, a table of phases only when there is room; long text ends in an ellipsis instead
  of wrapping, so the step and the weights stay in the first lines however narrow it is;
- anything else (a pipe, a file, a CI log) gets no redraws and no control sequences: one
  complete, newline-terminated line per change, stamped with the time and the run's
  elapsed seconds, each change printed once. A line never waits for the next one, so
  whatever else writes to the same stream cannot land in the middle of it.

`Snapshot` is what both show; `snapshot()` and `drill_snapshot()` make one from a run's
`progress` query and from a drill's. `FleetView` shows many runs at once (`drpilot evacuate`):
a runbook x phase table on a terminal, a line per runbook that changed elsewhere.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol, TextIO

from rich import box
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from workflows.types import DrillResult, PhaseRecord, Progress

# Below this many columns a table of phases with its details cannot be read: stack the facts.
WIDE = 100


@dataclass(frozen=True)
class Phase:
    name: str
    outcome: str
    seconds: float | None
    detail: str


@dataclass(frozen=True)
class Snapshot:
    run_id: str
    state: str  # "running", or how it ended: completed, rolled_back, ...
    phase: str
    step: str | None
    weights: Mapping[str, int]  # DNS weights last known applied
    target: Mapping[str, int]  # where the run is heading
    elapsed: float
    speed: float
    hold: str  # why the run waits and the command that moves it on; "" when it does not
    phases: tuple[Phase, ...]
    messages: tuple[str, ...]  # the run's timeline, oldest first


def _phases(records: list[PhaseRecord]) -> tuple[Phase, ...]:
    return tuple(Phase(r.name, r.outcome, r.seconds, r.detail) for r in records)


def weights_text(weights: Mapping[str, int]) -> str:
    return ", ".join(f"{region} {weight}%" for region, weight in weights.items()) or "-"


def _hold(p: Progress) -> str:
    if p.waiting_for == "approval":  # a block's approval says what is to be confirmed
        return f"waiting for approval: drpilot approve {p.run_id}" + (f" ({p.waiting_cause})" if p.waiting_cause else "")
    if p.drift is not None:
        return (
            f"held: DNS changed outside this run ({p.drift.record}: expected {weights_text(p.drift.expected)}, "
            f"found {weights_text(p.drift.found)}); drpilot resume {p.run_id} accepts it, "
            f"drpilot abort {p.run_id} leaves it"
        )
    if p.waiting_for == "route53 control plane":
        return (
            f"held: Route53's control plane does not answer ({p.waiting_cause}); goes on when it does, "
            f"drpilot abort {p.run_id} leaves DNS as it is"
        )
    if p.paused:
        return f"paused: drpilot resume {p.run_id}"
    if p.aborting:
        return "aborting: DNS returns to the last state that passed its health gate"
    return ""


def snapshot(p: Progress) -> Snapshot:
    """A failover's or failback's `progress` query, as shown."""
    return Snapshot(
        run_id=p.run_id, state=p.status or p.state, phase=p.phase, step=p.step, weights=dict(p.weights),
        target=dict(p.target_weights), elapsed=p.elapsed_seconds, speed=p.speed, hold=_hold(p),
        phases=_phases(p.phases), messages=tuple(p.messages),
    )


def drill_snapshot(d: DrillResult, child: Progress | None = None, now: datetime | None = None) -> Snapshot:
    """A drill's query, with the step and weights of its child run in flight (`child`): a
    drill's own phases say nothing of the traffic it is moving."""
    running = [p.name for p in d.phases if p.outcome == "running"]
    phase = running[-1] if running else (d.phases[-1].name if d.phases else "starting")
    ended = d.ended_at or now or datetime.now(UTC)
    return Snapshot(
        run_id=d.drill_id, state="running" if d.ended_at is None else d.status,
        phase=f"{phase}: {child.phase}" if child is not None else phase,
        step=child.step if child is not None else None,
        weights=dict(child.weights) if child is not None else {},
        target=dict(child.target_weights) if child is not None else {},
        elapsed=(ended - d.started_at).total_seconds(), speed=d.speed,
        hold=_hold(child) if child is not None else "",
        phases=_phases(d.phases), messages=tuple(d.messages),
    )


# ---------------------------------------------------------------------- the facts, as text
def _clean(text: str) -> str:
    """One line of printable text: a detail quoting a provider's error may hold newlines or
    escape sequences, which would break a line in a log or move the cursor in a terminal."""
    return "".join(c if c.isprintable() else " " for c in text)


def where(s: Snapshot) -> str:
    # A failback's shift phases are named after their step ("shift 50%"): say it once. A
    # finished run is at no step, whatever step it ended in.
    step = s.step if s.step and s.step not in s.phase and s.state == "running" else None
    return s.phase + (f", step {step}" if step else "")


def dns(s: Snapshot) -> str:
    """Each region's weight and, while moving, where it goes: "us-east-1 100% -> 50%, ..."
    keeps current and target side by side and short enough for a 60-column line."""
    if not s.weights:
        return weights_text(s.target)
    regions = [*s.weights, *(r for r in s.target if r not in s.weights)]
    moves = []
    for region in regions:
        now, then = s.weights.get(region, 0), s.target.get(region, s.weights.get(region, 0))
        moves.append(f"{region} {now}%" + (f" -> {then}%" if then != now else ""))
    return ", ".join(moves)


def _run(s: Snapshot) -> str:
    return f"{s.run_id} {s.state}" + (f" (speed {s.speed:g}x)" if s.speed != 1 else "")


def _seconds(phase: Phase) -> str:
    return f"{phase.seconds:.1f}s" if phase.seconds is not None else "..."


# ------------------------------------------------------------------------ the terminal view
def _line(text: str, style: str = "") -> Text:
    # Cut at the edge with an ellipsis: a wrapped line would push the facts below off screen.
    return Text(_clean(text), style=style, no_wrap=True, overflow="ellipsis")


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def render(s: Snapshot, width: int) -> RenderableType:
    """The view for a terminal `width` columns wide; no line is longer than `width`."""
    facts = [("run", _run(s)), ("phase", where(s)), ("DNS", dns(s)), ("elapsed", f"{s.elapsed:.1f}s")]
    if s.hold:
        facts.append(("hold", s.hold))
    elif s.messages:
        facts.append(("latest", s.messages[-1]))
    lines: list[RenderableType] = [_line(f"{label:<8} {value}", "bold" if label in ("phase", "DNS") else "")
                                   for label, value in facts]
    if width >= WIDE:
        rows = [(_clean(p.name), p.outcome, _seconds(p), _clean(p.detail)) for p in s.phases]
        table = Table(box=box.SIMPLE_HEAD, width=width, show_edge=False)
        for i, heading in enumerate(("phase", "outcome", "seconds", "detail")):
            # The short columns keep their width; the detail takes the rest and is cut.
            fit = max((len(row[i]) for row in rows), default=0) if i < 3 else None
            table.add_column(heading, no_wrap=True, overflow="ellipsis", min_width=fit, ratio=1 if i == 3 else None)
        for row in rows:
            table.add_row(*row)
        lines.append(table)
    else:
        # Names up to 18 columns (post-switch-validation is 22): the detail keeps some room.
        name = min(max((len(p.name) for p in s.phases), default=0), 18)
        lines += [_line(f"  {p.outcome:<11} {_cut(p.name, name):<{name}} {_seconds(p):>7}  {p.detail}") for p in s.phases]
    return Group(*lines)


# ----------------------------------------------------------------------------- the log view
class LogLines:
    """One line per change since the last snapshot, for streams that are not a terminal."""

    def __init__(self, file: TextIO, prefix: str = "", clock: Callable[[], datetime] = lambda: datetime.now(UTC)):
        self.file = file
        self.prefix = prefix
        self.clock = clock
        self.shown: dict[str, str] = {}  # what each fact last said
        self.ended: set[int] = set()  # the phases whose outcome was printed
        self.said = 0  # timeline messages printed

    def changes(self, s: Snapshot) -> Iterator[str]:
        if self.shown.get("run_id") != s.run_id:  # another run (a second failback): start over
            self.shown, self.ended, self.said = {"run_id": s.run_id, "state": s.state}, set(), 0
            yield _run(s)
        for i, p in enumerate(s.phases):
            if p.outcome != "running" and i not in self.ended:
                self.ended.add(i)
                yield f"{p.name}: {p.outcome} in {_seconds(p)}" + (f": {p.detail}" if p.detail else "")
        # A phase that began and ended between two polls was just told with its outcome.
        over = bool(s.phases) and s.phases[-1].name == s.phase and s.phases[-1].outcome != "running"
        # No weights is not news (a drill between its child runs knows none): the last stand.
        weights = f"DNS {dns(s)}" if s.weights or s.target else self.shown.get("dns", "")
        for key, text in (("phase", "" if over else f"phase {where(s)}"), ("dns", weights), ("hold", s.hold)):
            if self.shown.get(key) != text:
                self.shown[key] = text
                if text:  # a hold that ends says nothing: the next phase or step does
                    yield text
        for message in s.messages[self.said:]:
            yield f"| {message}"
        self.said = len(s.messages)
        if self.shown["state"] != s.state:
            self.shown["state"] = s.state
            yield f"{_run(s)} after {s.elapsed:.1f}s"

    def update(self, s: Snapshot) -> None:
        stamp = f"{self.clock():%H:%M:%S}Z {s.elapsed:7.1f}s"
        text = "".join(f"{self.prefix}{stamp}  {_clean(line)}\n" for line in self.changes(s))
        if text:
            # Whole lines in one write, flushed: nothing waits in a buffer for a newline.
            self.file.write(text)
            self.file.flush()


class LiveView:
    """The terminal view, redrawn in place; sized at each redraw, so a resize is followed."""

    def __init__(self, console: Console):
        self.console = console
        self.current: Snapshot | None = None
        self.live = Live(console=console, refresh_per_second=4, get_renderable=self._renderable)

    def _renderable(self) -> RenderableType:
        return "" if self.current is None else render(self.current, self.console.width)

    def update(self, s: Snapshot) -> None:
        self.current = s
        self.live.refresh()


@contextlib.contextmanager
def follow(console: Console, prefix: str = "") -> Iterator[LiveView | LogLines]:
    """The view for `console`: `update(snapshot)` with each poll. Redraws only where a person
    watches a terminal (rich's is_interactive: a TTY that is not dumb; TTY_INTERACTIVE=0
    forces lines, e.g. in a CI that sets FORCE_COLOR)."""
    if not console.is_interactive:
        yield LogLines(console.file, prefix)
        return
    view = LiveView(console)
    with view.live:
        yield view


def show(console: Console, s: Snapshot) -> None:
    """One snapshot, once (`drpilot status`): the terminal view, or the lines of a log."""
    if console.is_interactive:
        console.print(render(s, console.width))
    else:
        LogLines(console.file).update(s)


# ---------------------------------------------------------------------------- many runs
class Fleet(Protocol):
    """Many runs (drpilot/frontdoor/evacuation.py's Fleet): each one's last progress and, once
    it ended, its result or why it has none."""

    progress: Mapping[str, Progress]
    results: Mapping[str, object]


def fleet_rows(fleet: Fleet) -> dict[str, tuple[str, str, str]]:
    """Per runbook of a fleet: its state (how it ended, once it did), where it is, what it
    waits for."""
    rows = {}
    for run_id, p in fleet.progress.items():
        ended = fleet.results.get(run_id)
        state = getattr(ended, "status", "no result") if ended is not None else (p.status or p.state)
        rows[p.runbook] = (state, where(snapshot(p)), p.waiting_for or "")
    return rows


class FleetView:
    """runbook x phase while a fleet moves: a table redrawn on a terminal, else one stamped
    line per runbook whose row changed (the same two audiences as `follow`)."""

    def __init__(self, console: Console, title: str, clock: Callable[[], datetime] = lambda: datetime.now(UTC)):
        self.console, self.title, self.clock = console, title, clock
        self.shown: dict[str, str] = {}
        self.live = Live(console=console, refresh_per_second=2) if console.is_interactive else None

    def __enter__(self) -> FleetView:
        if self.live is not None:
            self.live.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self.live is not None:
            self.live.__exit__(*exc)

    def update(self, fleet: Fleet) -> None:
        rows = fleet_rows(fleet)
        if self.live is not None:
            table = Table("runbook", "state", "phase", "waiting for", title=self.title)
            for name, row in sorted(rows.items()):
                table.add_row(*(_clean(part) for part in (name, *row)))
            self.live.update(table)
            return
        lines = []
        for name, row in sorted(rows.items()):
            text = "  ".join(part for part in row if part)
            if self.shown.get(name) != text:
                self.shown[name] = text
                lines.append(f"{self.clock():%H:%M:%S}Z {name}: {_clean(text)}\n")
        if lines:
            self.console.file.write("".join(lines))
            self.console.file.flush()

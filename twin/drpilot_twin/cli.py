"""`drpilot sandbox up | down | status | fault`: the twin from a shell.

`up` stays in the foreground (a terminal of its own, or `&`), writes DIR/env and prints one
"sandbox ready" line; `down`, `status` and `fault` find it through DIR (the state directory:
`--state-dir`, else $DRPILOT_SANDBOX_DIR from a sourced env, else the one under .sandbox/).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import typer
from rich.console import Console
from rich.table import Table

from drpilot.cli.terminal import err, load_or_exit
from drpilot.cli.twin import INSTALL
from drpilot_twin.control import (
    FAULT_HELP,
    FaultError,
    check_regions,
    faults_from_json,
    parse_fault_args,
)
from drpilot_twin.faults import Faults

app = typer.Typer(
    help="A simulated twin of a runbook's world on 127.0.0.1: rehearse, demo and test against it.",
    no_args_is_help=True,
)
fault_app = typer.Typer(help="Inject, show and clear faults in a running sandbox.", no_args_is_help=True)
app.add_typer(fault_app, name="fault")

out = Console(highlight=False, soft_wrap=True)

SANDBOX_ROOT = Path(".sandbox")
PID_FILE = "sandbox.pid"
DESCRIPTION_FILE = "sandbox.json"


def _fail(message: str) -> typer.Exit:
    err.print(message, markup=False)
    return typer.Exit(1)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie has exited; only its parent has not collected it yet.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _read_pid(state_dir: Path) -> int | None:
    """The pid of the `up` running from state_dir, or None (no file, or a stale one whose
    pid now belongs to another program: never signal that)."""
    try:
        pid = int((state_dir / PID_FILE).read_text().strip())
    except (OSError, ValueError):
        return None
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return pid  # gone: callers see it is not alive
    return pid if b"sandbox" in cmdline else None


def resolve_state_dir(state_dir: Path | None) -> Path:
    """--state-dir, else $DRPILOT_SANDBOX_DIR (set by a sourced env), else the only sandbox
    under .sandbox/."""
    if state_dir is not None:
        return state_dir
    if os.environ.get("DRPILOT_SANDBOX_DIR"):
        return Path(os.environ["DRPILOT_SANDBOX_DIR"])
    candidates = sorted(p.parent for p in SANDBOX_ROOT.glob(f"*/{DESCRIPTION_FILE}"))
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise _fail(f"no sandbox found under {SANDBOX_ROOT}/; give --state-dir DIR (the directory `up` used)")
    names = ", ".join(str(c) for c in candidates)
    raise _fail(f"several sandboxes under {SANDBOX_ROOT}/ ({names}); give --state-dir DIR")


def _description(state_dir: Path) -> dict[str, Any]:
    try:
        return json.loads((state_dir / DESCRIPTION_FILE).read_text())
    except (OSError, ValueError):
        raise _fail(
            f"no running sandbox in {state_dir} ({state_dir / DESCRIPTION_FILE} is missing); "
            f"start one with `drpilot sandbox up --runbook FILE --state-dir {state_dir}`"
        ) from None


def _control(state_dir: Path, method: str, path: str, body: Any = None) -> Any:
    url = _description(state_dir).get("control")
    pid = _read_pid(state_dir)
    if pid is None or not _alive(pid):
        raise _fail(f"the sandbox in {state_dir} is not running; start it with `drpilot sandbox up`")
    try:
        response = httpx.request(method, f"{url}{path}", json=body, timeout=10)
    except httpx.HTTPError as exc:
        raise _fail(f"the sandbox's control API at {url} does not answer: {exc}") from None
    if response.status_code >= 400:
        try:
            message = response.json().get("error", response.text)
        except ValueError:
            message = response.text
        raise _fail(f"the sandbox refused: {message}")
    return response.json()


# ------------------------------------------------------------------------------------ up
# Top-level modules the twin's distribution requires (twin/pyproject.toml: moto[s3,route53,
# server], cryptography) that it imports; a production install leaves them out.
TWIN_REQUIREMENT_MODULES = frozenset({"moto", "cryptography", "flask", "flask_cors", "werkzeug"})


def _missing_requirement(exc: ImportError) -> str | None:
    """The fix when `exc` is a module the twin requires missing; None for anything else."""
    missing = (exc.name or "").partition(".")[0]
    if missing not in TWIN_REQUIREMENT_MODULES:
        return None
    return f"`drpilot sandbox up` needs the twin's requirements ({missing} is not installed): {INSTALL}"


class _Stop(BaseException):
    """Raised from the signal handler so a SIGTERM during start-up unwinds through Twin.start,
    which stops whatever it had already started."""


@app.command()
def up(
    runbook: Path = typer.Option(..., "--runbook", "-r", help="Runbook YAML file."),
    state_dir: Path | None = typer.Option(
        None, "--state-dir", help="Where env, sandbox.json, kubeconfig, logs and Temporal state go [default: .sandbox/<runbook name>]."
    ),
    speed: float = typer.Option(1.0, "--speed", help="Divide every simulated wait (pod starts, PENDING, restores) and, via DIR/env, every wait the engine makes, by this; request latency is never scaled."),
    fault: list[str] = typer.Option([], "--fault", help="A fault at start-up: key=value (repeatable) or one JSON object. See `drpilot sandbox fault set --help`."),
    temporal: bool = typer.Option(True, "--temporal/--no-temporal", help="Start a Temporal dev server (UI included)."),
    observability: bool = typer.Option(True, "--observability/--no-observability", help="Start Prometheus and Alertmanager when installed."),
    webhook_url: str = typer.Option("http://127.0.0.1:8787/v1/alertmanager", "--webhook-url", help="Where Alertmanager sends alerts (drpilot's webhook)."),
    prometheus_rules: list[Path] = typer.Option([], "--prometheus-rules", help="Alerting rule file for Prometheus (repeatable), e.g. infra/prometheus/rules.yaml."),
    webhook_token_file: Path = typer.Option(None, "--webhook-token-file", help="File holding the bearer token Alertmanager sends the webhook (drpilot webhook serve --token-file)."),
) -> None:
    """Start the twin of a runbook's world on 127.0.0.1; stays in the foreground until Ctrl-C.

    Writes DIR/env (`source` it), DIR/sandbox.json, DIR/kubeconfig and DIR/logs/. SIGINT,
    SIGTERM or `drpilot sandbox down` stop every part and child process it started."""
    try:
        from drpilot_twin.twin import Twin  # the parts are heavy to import; only `up` needs them
    except ImportError as exc:
        if (fix := _missing_requirement(exc)) is None:
            raise
        raise _fail(fix) from None

    if speed < 1:
        raise _fail(f"--speed {speed:g}: expected a number >= 1")
    rb = load_or_exit(runbook)
    state_dir = state_dir or SANDBOX_ROOT / rb.name
    try:
        webhook_token = webhook_token_file.read_text().strip() if webhook_token_file else None
    except OSError as exc:
        raise _fail(f"--webhook-token-file {webhook_token_file}: {exc.strerror or exc}") from None
    try:
        faults = faults_from_json(parse_fault_args(fault)) if fault else Faults()
        check_regions(faults, rb.regions)
    except FaultError as exc:
        raise _fail(f"--fault: {exc}") from None
    pid = _read_pid(state_dir)
    if pid is not None and pid != os.getpid() and _alive(pid):
        raise _fail(
            f"a sandbox is already running from {state_dir} (pid {pid}); "
            f"stop it with `drpilot sandbox down --state-dir {state_dir}`"
        )
    state_dir.mkdir(parents=True, exist_ok=True)

    stopping = threading.Event()
    phase = {"ready": False}

    def on_signal(signum: int, _frame: Any) -> None:
        stopping.set()
        if not phase["ready"]:
            raise _Stop()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    twin = None
    code = 0
    try:
        (state_dir / PID_FILE).write_text(f"{os.getpid()}\n")
        started = time.monotonic()
        twin = Twin(
            rb,
            state_dir,
            speed=speed,
            faults=faults,
            temporal=temporal,
            prometheus=None if observability else False,
            alertmanager=None if observability else False,
            webhook_url=webhook_url,
            webhook_token=webhook_token,
            runbook_path=runbook,
            prometheus_rules=prometheus_rules,
        )
        twin.start()
        phase["ready"] = True
        for note in twin.notes:
            err.print(note, markup=False)
        out.print(
            f"sandbox ready: {rb.name} in {time.monotonic() - started:.1f}s; "
            f"`source {state_dir / 'env'}` to point drpilot at it "
            f"(temporal {twin.temporal_address or 'off'}, ui {twin.temporal_ui or 'off'}, "
            f"control {twin.control_url}); Ctrl-C or `drpilot sandbox down` stops it",
            markup=False,
        )
        while not stopping.wait(0.5):
            pass
    except _Stop:
        err.print("interrupted while starting; stopping what had started", markup=False)
        code = 130
    except Exception as exc:
        fix = _missing_requirement(exc) if isinstance(exc, ImportError) else None
        err.print(fix or f"sandbox did not start: {exc}", markup=False)
        code = 1
    finally:
        # Further signals must not interrupt the clean-up itself.
        for s in previous:
            signal.signal(s, signal.SIG_IGN)
        if twin is not None:
            twin.stop()
        with contextlib.suppress(OSError, ValueError):
            if int((state_dir / PID_FILE).read_text()) == os.getpid():
                (state_dir / PID_FILE).unlink()
        for s, handler in previous.items():
            signal.signal(s, handler)
    if code:
        raise typer.Exit(code)
    err.print(f"sandbox {rb.name} stopped", markup=False)


# ---------------------------------------------------------------------------------- down
def _children(description: dict[str, Any]) -> list[int]:
    return [int(p) for p in description.get("children", {}).values() if p]


def _started_by(pid: int, state_dir: Path) -> bool:
    """True when `pid` is still a child this sandbox started (every child's command line names
    the state directory), not an unrelated process that got the pid since."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return False
    return str(state_dir.resolve()) in cmdline


@app.command()
def down(
    state_dir: Path | None = typer.Option(None, "--state-dir", help="The sandbox's state directory."),
    timeout: float = typer.Option(30.0, "--timeout", help="Seconds to wait for it to stop before SIGKILL."),
) -> None:
    """Stop the sandbox running in the foreground elsewhere and wait until it is gone."""
    state_dir = resolve_state_dir(state_dir)
    pid = _read_pid(state_dir)
    if pid is None or not _alive(pid):
        (state_dir / PID_FILE).unlink(missing_ok=True)
        out.print(f"no sandbox running in {state_dir}", markup=False)
        return
    try:
        description = json.loads((state_dir / DESCRIPTION_FILE).read_text())
    except (OSError, ValueError):
        description = {}
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if _alive(pid):
        err.print(f"sandbox (pid {pid}) still running after {timeout:g}s; sending SIGKILL", markup=False)
        os.kill(pid, signal.SIGKILL)
        while _alive(pid):
            time.sleep(0.05)
        (state_dir / PID_FILE).unlink(missing_ok=True)
    # Its children die with it (own process groups, stopped by `up`, PDEATHSIG as a backstop);
    # anything still alive after a SIGKILL is ended here.
    for child in _children(description):
        if _alive(child) and _started_by(child, state_dir):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(child, signal.SIGKILL)
    out.print(f"sandbox in {state_dir} stopped", markup=False)


# -------------------------------------------------------------------------------- status
@app.command()
def status(
    state_dir: Path | None = typer.Option(None, "--state-dir", help="The sandbox's state directory."),
    as_json: bool = typer.Option(False, "--json", help="Print the raw status JSON."),
) -> None:
    """Show the running sandbox: its parts and URLs, DNS weights, replicas, traffic, Aurora writers, faults."""
    state_dir = resolve_state_dir(state_dir)
    report = _control(state_dir, "GET", "/status")
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    out.print(f"sandbox {report.get('runbook')} in {state_dir}  speed {report.get('speed')}x  pid {_read_pid(state_dir)}")
    parts = Table("part", "where", title="Parts")
    for name, where in report.get("parts", {}).items():
        parts.add_row(name, str(where))
    out.print(parts)
    regions = Table("region", "role", "weight", "serving", "pods ready/desired", "traffic ok/err", title="Regions")
    for name, region in report.get("regions", {}).items():
        pods = "\n".join(
            f"{d.rsplit('/', 1)[-1]} {r['ready']}/{r['replicas']}" for d, r in region.get("deployments", {}).items()
        )
        traffic = region.get("traffic", {})
        serving = "DOWN" if region.get("down") else "ready" if region.get("ready") else f"not ready: {region.get('reason')}"
        regions.add_row(
            name,
            region.get("role", ""),
            str(region.get("weight", "?")),
            serving,
            pods or "-",
            f"{traffic.get('ok', 0)}/{traffic.get('errors', 0)}",
        )
    out.print(regions)
    if report.get("databases"):
        databases = Table("global database", "writer", "status", title="Aurora (aurora_global blocks)")
        for name, db in report["databases"].items():
            databases.add_row(name, str(db.get("writer") or "-"), db.get("status", "") + (f" ({db['operation']})" if db.get("operation") else ""))
        out.print(databases)
    active = {k: v for k, v in report.get("faults", {}).items() if v not in (0, 0.0, [], {}, None)}
    out.print(f"faults: {json.dumps(active) if active else 'none'}", markup=False)


# --------------------------------------------------------------------------------- fault
@fault_app.callback()
def fault_main(
    ctx: typer.Context,
    state_dir: Path | None = typer.Option(None, "--state-dir", help="The sandbox's state directory."),
) -> None:
    ctx.obj = state_dir


def _fault_dir(ctx: typer.Context, state_dir: Path | None) -> Path:
    return resolve_state_dir(state_dir or ctx.obj)


def _print_faults(faults: dict[str, Any]) -> None:
    active = {k: v for k, v in faults.items() if v not in (0, 0.0, [], {}, None)}
    if not active:
        out.print("no faults", markup=False)
    for key, value in active.items():
        out.print(f"{key} = {json.dumps(value)}", markup=False)


@fault_app.command("set", help=f"Set faults (others stay as they are).\n\n\b\n{FAULT_HELP}")
def fault_set(
    ctx: typer.Context,
    faults: list[str] = typer.Argument(..., metavar="KEY=VALUE...", help="Faults to set, or one JSON object."),
    state_dir: Path | None = typer.Option(None, "--state-dir", help="The sandbox's state directory."),
) -> None:
    directory = _fault_dir(ctx, state_dir)
    current = Faults.from_json(_control(directory, "GET", "/faults"))
    try:
        patch = parse_fault_args(faults, current)
    except FaultError as exc:
        raise _fail(str(exc)) from None
    _print_faults(_control(directory, "PATCH", "/faults", patch))


@fault_app.command("clear")
def fault_clear(
    ctx: typer.Context,
    state_dir: Path | None = typer.Option(None, "--state-dir", help="The sandbox's state directory."),
) -> None:
    """Clear every fault: the twin behaves normally again."""
    _print_faults(_control(_fault_dir(ctx, state_dir), "DELETE", "/faults"))


@fault_app.command("show")
def fault_show(
    ctx: typer.Context,
    state_dir: Path | None = typer.Option(None, "--state-dir", help="The sandbox's state directory."),
    as_json: bool = typer.Option(False, "--json", help="Print every field as JSON."),
) -> None:
    """Show the faults in force."""
    faults = _control(_fault_dir(ctx, state_dir), "GET", "/faults")
    if as_json:
        typer.echo(json.dumps(faults, indent=2))
    else:
        _print_faults(faults)


# `drpilot demo`: offered beside `drpilot sandbox` through the entry-point group drpilot.commands.
def demo(
    speed: float = typer.Option(None, min=1.0, help="Rehearsal speed (default 180, or DRPILOT_DEMO_SPEED)."),
    keep: bool = typer.Option(False, "--keep", help="Leave the sandbox up to explore afterwards, until Ctrl-C."),
    runbook: Path = typer.Option(None, "--runbook", help="Rehearse this runbook the same way (default runbooks/llm-inference.yaml)."),
    state_dir: Path = typer.Option(None, "--state-dir", help="Where the twin, the logs and the reports go (default .sandbox/demo-RUNBOOK)."),
) -> None:
    """The story on a simulated twin: region down, alert, approved failover, a failback that rolls back, one that completes."""
    from drpilot_twin import demo as story

    args = [*(["--speed", f"{speed:g}"] if speed else []), *(["--keep"] if keep else []),
            *(["--runbook", str(runbook)] if runbook else []), *(["--state-dir", str(state_dir)] if state_dir else [])]
    raise typer.Exit(story.main(args))

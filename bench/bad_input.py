"""Bad input (issue 13, 3.7): malformed runbooks, rules files and webhook bodies, generated
with hypothesis, must each get a clean error, never a crash.

Three front doors:
1. runbooks: YAML text from runbooks/*.yaml, mutated (a value replaced by one of the wrong
   type, a field removed, an unknown field added, characters edited, garbage, deep nesting,
   huge values, YAML's own features: anchors and alias bombs, tags, merge keys, several
   documents), written to a file and given to the CLI's `drpilot runbook validate FILE`
   function (drpilot.cli.terminal.validate_files with drpilot.domain.loader.load_runbook, in process);
2. rules files: infra/alertmanager/drpilot-rules.yaml mutated the same ways, its runbook paths
   resolved next to the real runbooks, given to `drpilot webhook rules validate FILE`
   (validate_files with drpilot.webhook.rules.load_rules);
3. webhook bodies: Alertmanager notifications mutated the same ways, garbage, wrong JSON, deep
   nesting, huge bodies, a wrong token or content type, POSTed over HTTP to the webhook's ASGI
   app (drpilot.webhook.app.Webhook, the real rules) served by uvicorn on 127.0.0.1. It has no
   Temporal: a well-formed alert gets the 503 "Temporal unavailable" answer, so what is tested
   is everything before admission.

An input's outcome:
- clean: the validator exits 1 and every line it printed is one `FILE:LINE:COL: ...` problem
  (file, line and, where there is one, the field), or the webhook answers 4xx / 503 with a JSON
  `{"error": ...}`; an input that is still valid (a mutation that changed nothing that matters)
  is counted as accepted;
- crash: any other exception, a traceback, a 5xx other than the 503, or no answer.

`python -m bench.bad_input` prints the rows; `make bench` puts them in BENCHMARKS.md.
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import os
import re
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import typer
import yaml
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

from drpilot.cli.terminal import validate_files
from drpilot.domain.loader import load_runbook
from drpilot.domain.settings import Settings
from drpilot.frontdoor.temporal import TemporalUnavailable
from drpilot.webhook.app import PATH, TokenSource, Webhook
from drpilot.webhook.rules import load_rules
from tests.support.fuzz import STRUCTURAL, mutate, nested
from tests.support.loopback import uvicorn_on_loopback

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = int(os.environ.get("BENCH_BAD_INPUT_EXAMPLES", "600"))  # per front door
SEED = int(os.environ.get("BENCH_BAD_INPUT_SEED", "13"))
RUNBOOK_TEXTS = [p.read_text() for p in sorted((ROOT / "runbooks").glob("*.yaml"))]
RULES = ROOT / "infra" / "alertmanager" / "drpilot-rules.yaml"
TOKEN = "bench-bad-input-token"
MAX_BODY = 64 * 1024  # the webhook's limit here (default 4 MiB): oversized bodies stay cheap
PROBLEM = re.compile(r"^(?P<file>[^\n:]+):(?P<line>\d+):(?P<col>\d+): \S")
CLEAN_STATUSES = {400, 401, 408, 413, 415, 422, 503}

BAD_INPUT_HEADER = [
    "## Bad input: malformed runbooks, rules files and webhook bodies",
    "",
    "`python -m bench.bad_input` (also part of `make bench`; `BENCH_BAD_INPUT_EXAMPLES` per front door,",
    f"`BENCH_BAD_INPUT_SEED`): hypothesis (seed {SEED}, generation only) mutates `runbooks/*.yaml`,",
    "`infra/alertmanager/drpilot-rules.yaml` and an Alertmanager notification: wrong types, missing and",
    "unknown fields, edited characters, garbage, deep nesting, huge values, YAML anchors / tags / merge",
    "keys. Runbooks and rules files go through the CLI's validate function (file on disk, in process);",
    "bodies are POSTed to the webhook app under uvicorn on 127.0.0.1 (no Temporal behind it). Clean: exit",
    "1 with only `FILE:LINE:COL: field: message` lines, or a 4xx / 503 JSON error; crash: anything else.",
    "",
    "| front door / input kind | inputs | accepted | clean errors | crashes |",
    "| --- | --- | --- | --- | --- |",
]
BAD_INPUT_NOTE = [
    "The first runs of this module found crashes, all in the YAML loader runbooks and rules files",
    "share (drpilot/domain/loader.py), each printing a traceback instead of a problem: nesting beyond",
    "Python's recursion limit (RecursionError in PyYAML's composer or the loader's walk; now refused",
    "beyond 64 levels, with the place), an integer of more than 4300 digits (ValueError from int()),",
    "a date such as 2024-13-45 (ValueError), a merge key `<<: 1` (ConstructorError), a duration",
    "beyond 999999999 days (OverflowError: drpilot/domain/durations.py), a capacity written as a 5000-digit",
    "hex number (OverflowError in float(), then again printing it: drpilot/domain/runbook.py); an alias bomb",
    "(7 lines, 4.8 million values) took 11 s to refuse, more levels minutes and gigabytes (now refused",
    "beyond 100000 values at once); a key holding a line break printed a problem over two lines (now",
    "escaped), and every problem on line 100 printed as `FILE💯COL` (rich's emoji codes; the stderr",
    "console now has emoji off). Each has a test (tests/domain/test_runbook_loader.py, tests/cli/test_cli_runbook.py);",
    "the counts above are after the fixes. The webhook answered every body with a clean 4xx / 503.",
    "Inputs/s is the validator plus generating the input (hypothesis, YAML dump) and writing the file.",
]


# ------------------------------------------------------------------ values and mutations
values = nested(st.one_of(
    st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20), st.dates(),
    st.sampled_from(["5m", "0s", "-1m", "1e400s", "99999999999999999999d", "primary", "standby", "route53",
                     "s3://b/k/", "http://x", "", " ", "~", "yes", "no", "0x1F", "1_000", ".inf", "2024-13-45"]),
))
_HUGE = st.sampled_from([
    "9" * 5000, "0x" + "f" * 5000, "1e400", "-1e400", ".inf", ".nan", "x" * 200_000,
    "[" + ", ".join(["1"] * 20_000) + "]", "{" + ", ".join(f"k{i}: {i}" for i in range(5000)) + "}",
    "9" * 30 + "d", "9" * 400 + "s", "0." + "0" * 4000 + "1",
])
_SPECIAL = st.sampled_from([
    ":", "- ", "[", "]", "{", "}", "&a ", "*a", "!!python/object:os.system ", "!!binary ", "!!set ", "<<: ",
    "\t", "%YAML 1.1\n", "---\n", "...\n", "'", '"', "#", "|", ">", "?", "\x00", "\x85", "\ufeff", "\ud800", "\\",
])


def _nest(depth: int, kind: str) -> str:
    if kind == "list":
        return "[" * depth + "1" + "]" * depth
    if kind == "map":
        return "{a: " * depth + "1" + "}" * depth
    return "\n".join(" " * i + "-" for i in range(depth))  # block sequence


@st.composite
def yaml_inputs(draw, texts: list[str]) -> tuple[str, str | bytes]:
    """(input kind, YAML text, or bytes that may not be UTF-8): one mutation of one of `texts`."""
    text = draw(st.sampled_from(texts))
    document = _parsed(text)
    kind = draw(st.sampled_from(["wrong type", "missing field", "unknown field", "character edits", "garbage",
                                 "deep nesting", "huge value", "yaml features"]))
    if kind in STRUCTURAL:
        document = mutate(draw, document, kind, values)
        return kind, yaml.safe_dump(document, sort_keys=False, allow_unicode=draw(st.booleans()))
    if kind == "character edits":
        for _ in range(draw(st.integers(1, 4))):
            at = draw(st.integers(0, len(text) - 1))
            cut = draw(st.integers(0, 5))
            insert = draw(st.one_of(_SPECIAL, st.text(max_size=5)))
            text = text[:at] + insert + text[at + cut:]
        return kind, text
    if kind == "garbage":
        return kind, draw(st.one_of(st.text(max_size=500), st.binary(max_size=500)))
    lines = text.splitlines()
    candidates = [i for i, line in enumerate(lines) if re.match(r"^\s*[A-Za-z_]+: \S", line)]
    i = draw(st.sampled_from(candidates))
    key = lines[i].split(":", 1)[0]
    if kind == "deep nesting":
        value = _nest(draw(st.sampled_from([65, 100, 300, 1000, 5000])), draw(st.sampled_from(["list", "map", "block"])))
        if "\n" in value:  # a block sequence goes under the key, indented
            value = "\n" + "\n".join(" " * (len(key) - len(key.lstrip()) + 2) + v for v in value.splitlines())
    elif kind == "huge value":
        value = draw(_HUGE)
    else:
        value = draw(st.sampled_from([
            "&x 1", "*undefined", "!!python/object/apply:os.system [true]", "!!binary aGVsbG8=", "!!timestamp 2024-13-45",
            "!!int abc", "!!float x", "!!set {a, b}", "!!omap [a: 1]", "!custom 1", "{<<: 1}", "{<<: [1, 2]}",
            "{<<: *undefined}", "|\n  text", "'unterminated", "1\n---\nsecond: document",
        ]))
        if draw(st.booleans()):  # an alias bomb at the top
            text = "".join(f"b{n}: &b{n} [{', '.join([f'*b{n - 1}' if n else '1'] * 9)}]\n" for n in range(7)) + text
            lines = text.splitlines()
            i += 7
    lines[i] = f"{key}: {value}"
    return kind, "\n".join(lines) + "\n"


@functools.lru_cache(maxsize=8)
def _parsed(text: str) -> Any:
    return yaml.safe_load(text)  # never mutated: the mutations copy what they change


# ------------------------------------------------------------------ outcomes
class Tally:
    def __init__(self) -> None:
        self.by_kind: dict[str, Counter[str]] = {}
        self.crashes: list[str] = []
        self.longest = 0

    def add(self, kind: str, outcome: str, detail: str = "") -> None:
        self.by_kind.setdefault(kind, Counter())[outcome] += 1
        if outcome == "crash" and len(self.crashes) < 20:
            self.crashes.append(f"{kind}: {detail}")


def validate(path: Path, load: Callable[[Path], object], noun: str) -> tuple[str, str]:
    """What `drpilot runbook|webhook rules validate FILE` does with the file: (outcome, detail)."""
    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            validate_files([path], load, noun)
    except typer.Exit as exc:
        lines = err.getvalue().splitlines()
        problems, summary = lines[:-1], lines[-1:] == [f"1 of 1 {noun}(s) invalid"]
        if exc.exit_code == 1 and summary and problems and all(
            (m := PROBLEM.match(p)) and m["file"] == str(path) for p in problems
        ):
            return "clean", max(map(len, problems))
        return "crash", f"exit {exc.exit_code}: {err.getvalue()[:300]!r}"
    except BaseException as exc:  # noqa: BLE001 - a crash is what is being counted
        if isinstance(exc, KeyboardInterrupt):
            raise
        return "crash", "".join(traceback.format_exception_only(exc)).strip()[:300]
    return "accepted", 0


def _run(examples: int, strategy: st.SearchStrategy, body: Callable[[Any], None]) -> None:
    @seed(SEED)
    @settings(max_examples=examples, deadline=None, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(strategy)
    def run(case: Any) -> None:
        body(case)

    run()


def _validating(path: Path, load: Callable[[Path], object], noun: str, tally: Tally) -> Callable[[tuple[str, str | bytes]], None]:
    """One case's body: write the input to `path`, validate it as the CLI does, count the outcome."""

    def case(drawn: tuple[str, str | bytes]) -> None:
        kind, text = drawn
        path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass"))
        outcome, detail = validate(path, load, noun)
        tally.add(kind, outcome, detail if outcome == "crash" else "")
        if outcome == "clean":
            tally.longest = max(tally.longest, int(detail))

    return case


def bench_files(tmp: Path) -> tuple[Tally, Tally, float, float]:
    runbooks, rules = Tally(), Tally()
    begin = time.perf_counter()
    _run(EXAMPLES, yaml_inputs(RUNBOOK_TEXTS), _validating(tmp / "runbook.yaml", load_runbook, "runbook", runbooks))
    runbook_seconds = time.perf_counter() - begin

    # The rules file's runbooks resolve next to the real ones: the rules file lives there too.
    (tmp / "infra" / "alertmanager").mkdir(parents=True)
    (tmp / "runbooks").mkdir()
    for path in (ROOT / "runbooks").glob("*.yaml"):
        (tmp / "runbooks" / path.name).write_text(path.read_text())
    rules_path = tmp / "infra" / "alertmanager" / "rules.yaml"

    begin = time.perf_counter()
    _run(EXAMPLES, yaml_inputs([RULES.read_text()]), _validating(rules_path, load_rules, "rules file", rules))
    return runbooks, rules, runbook_seconds, time.perf_counter() - begin


# ------------------------------------------------------------------ webhook bodies
def _notification() -> dict:
    alert = {
        "status": "firing", "labels": {"alertname": "RegionDown", "drpilot_runbook": "llm-inference",
                                        "drpilot_action": "failover", "region": "us-east-1"},
        "annotations": {"summary": "us-east-1 is dark"}, "startsAt": "2026-01-01T00:00:00Z",
        "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "http://prometheus.local/graph", "fingerprint": "f1",
    }
    return {
        "version": "4", "groupKey": '{}:{alertname="RegionDown"}', "truncatedAlerts": 0, "status": "firing",
        "receiver": "drpilot", "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {},
        "externalURL": "http://alertmanager.local", "alerts": [alert],
    }


json_values = nested(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=20),
              st.sampled_from(["firing", "resolved", "4", "2026-01-01T00:00:00Z", "0001-01-01T00:00:00Z", "not a date", ""])),
)


@st.composite
def bodies(draw) -> tuple[str, bytes, dict[str, str]]:
    """(input kind, body, headers) for one POST."""
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    document = _notification()
    kind = draw(st.sampled_from(["wrong type", "missing field", "unknown field", "character edits", "garbage",
                                 "deep nesting", "huge value", "headers"]))
    if kind in STRUCTURAL:
        return kind, json.dumps(mutate(draw, document, kind, json_values)).encode(), headers
    text = json.dumps(document)
    if kind == "character edits":
        for _ in range(draw(st.integers(1, 4))):
            at = draw(st.integers(0, len(text) - 1))
            text = text[:at] + draw(st.text(max_size=3)) + text[at + draw(st.integers(0, 5)):]
        return kind, text.encode("utf-8", "surrogatepass"), headers
    if kind == "garbage":
        return kind, draw(st.binary(max_size=500)), headers
    if kind == "deep nesting":
        depth = draw(st.sampled_from([100, 1000, 10_000, 30_000]))
        nested = draw(st.sampled_from(["[" * depth + "]" * depth, '{"a":' * depth + "1" + "}" * depth]))
        where = draw(st.sampled_from(['"alerts": []', '"labels": {}', '"groupLabels": {}']))
        key = where.split(":")[0]
        return kind, text.replace(where if where in text else '"groupLabels": {}', f"{key}: {nested}", 1).encode(), headers
    if kind == "huge value":
        value = draw(st.sampled_from(["9" * 5000, "1e999", "-1e999", "NaN", "Infinity", '"' + "x" * 100_000 + '"',
                                      "[" + ",".join(["{}"] * 20_000) + "]", '"' + "\\ud800" * 10 + '"']))
        field = draw(st.sampled_from(["truncatedAlerts", "version", "groupKey", "alerts", "receiver", "startsAt", "labels"]))
        pattern = rf'"{field}": ("[^"]*"|\d+|\[\]|{{}}|\[.*\])'
        return kind, re.sub(pattern, lambda _: f'"{field}": {value}', text, count=1).encode(), headers
    # headers: a wrong token, a wrong or missing content type, a lying content length
    change = draw(st.sampled_from(["no token", "wrong token", "basic auth", "text/plain", "no content type",
                                   "form", "gzip", "short length"]))
    if change == "no token":
        headers.pop("Authorization")
    elif change == "wrong token":
        headers["Authorization"] = "Bearer " + draw(st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=40))
    elif change == "basic auth":
        headers["Authorization"] = "Basic Zm9vOmJhcg=="
    elif change == "text/plain":
        headers["Content-Type"] = "text/plain"
    elif change == "no content type":
        headers.pop("Content-Type")
    elif change == "form":
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    elif change == "gzip":
        headers["Content-Encoding"] = "gzip"
    return kind, text.encode(), headers


class _Quiet:
    def __getattr__(self, name: str) -> Callable[..., None]:
        return lambda *args, **kwargs: None


class _NoTemporal(TemporalUnavailable):
    pass


async def _no_temporal():
    raise _NoTemporal("no Temporal behind this webhook (bench.bad_input)")


async def _no_dns(_runbook):
    raise _NoTemporal("no DNS behind this webhook (bench.bad_input)")


def bench_webhook() -> tuple[Tally, float]:
    tally = Tally()
    webhook = Webhook(load_rules(RULES), Settings(), TokenSource(TOKEN), _no_temporal, _no_dns, max_body=MAX_BODY)
    webhook.log = _Quiet()  # each well-formed alert would log "Temporal not answering"
    with uvicorn_on_loopback(webhook.app()) as url, httpx.Client(base_url=url, timeout=30) as http:

        def post(case: tuple[str, bytes, dict[str, str]]) -> None:
            kind, body, headers = case
            try:
                response = http.post(PATH, content=body, headers=headers)
            except httpx.HTTPError as exc:
                tally.add(kind, "crash", f"no answer: {exc!r}")
                return
            try:
                answer = response.json()
            except ValueError:
                answer = None
            if response.status_code in CLEAN_STATUSES and isinstance(answer, dict) and isinstance(answer.get("error"), str):
                tally.add(kind, "clean")
            elif response.status_code == 200:
                tally.add(kind, "accepted")
            else:
                tally.add(kind, "crash", f"HTTP {response.status_code}: {response.text[:200]!r}")

        begin = time.perf_counter()
        _run(EXAMPLES, bodies(), post)
        seconds = time.perf_counter() - begin
    return tally, seconds


# ------------------------------------------------------------------ rows
def _rows(door: str, tally: Tally, seconds: float, unit: str) -> list[str]:
    total = Counter()
    for counts in tally.by_kind.values():
        total.update(counts)
    n = sum(total.values())
    rows = [f"| **{door}**: all ({n / seconds:.0f} {unit}/s, {seconds:.1f} s) | {n} | {total['accepted']} | "
            f"{total['clean']} | **{total['crash']}** |"]
    for kind, counts in sorted(tally.by_kind.items()):
        rows.append(f"| {door}: {kind} | {sum(counts.values())} | {counts['accepted']} | {counts['clean']} | {counts['crash']} |")
    return rows


def bench_bad_input() -> list[str]:
    with tempfile.TemporaryDirectory(prefix="drpilot-bad-input-") as tmp:
        runbooks, rules, runbook_seconds, rules_seconds = bench_files(Path(tmp))
    webhook, webhook_seconds = bench_webhook()
    rows = [
        *_rows("runbook validate", runbooks, runbook_seconds, "inputs"),
        *_rows("rules validate", rules, rules_seconds, "inputs"),
        *_rows("webhook POST", webhook, webhook_seconds, "requests"),
    ]
    crashes = runbooks.crashes + rules.crashes + webhook.crashes
    rows += ["", f"Longest problem line: runbooks {runbooks.longest} characters, rules files {rules.longest}."]
    if crashes:
        rows += ["", "Crashes (first of each):", *(f"- `{c}`" for c in crashes)]
    return rows


if __name__ == "__main__":
    print("\n".join([*BAD_INPUT_HEADER, *bench_bad_input()]))

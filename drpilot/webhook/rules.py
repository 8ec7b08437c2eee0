"""Routing rules: which Alertmanager alerts may start which runbook's failover, and how.

A rules file is YAML validated like a runbook (FILE:LINE:COL, did-you-mean, JSON Schema):

    apiVersion: drpilot/v1
    kind: WebhookRules
    circuit_breaker: {max_runs: 3, window: 1h}
    rules:
      - name: region-down
        match: ['alertname="RegionDown"', 'drpilot_runbook="llm-inference"']
        runbook: ../../runbooks/llm-inference.yaml   # relative to this file
        region_label: region                         # the label naming the failed region
        action: failover
        mode: auto                                   # or approval
        for: 2m                                      # minimum firing time (flap damping)

The first rule whose matchers all match an alert's labels decides it, as the first matching
Alertmanager route does. Matchers are written as Alertmanager writes them, with its
semantics: regexes are anchored, and a label the alert lacks has the value "".
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from drpilot.domain.durations import Duration
from drpilot.domain.loader import (
    DocumentError,
    RunbookError,
    load_runbook,
    parse_document,
    read_document,
)
from drpilot.domain.runbook import Frozen, PositiveInt, Runbook, Text

_MATCHER = re.compile(r"\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*(.*?)\s*")
_ESCAPES = {"\\": "\\", '"': '"', "n": "\n", "t": "\t"}


class RulesError(DocumentError):
    """A rules file that cannot be used."""


@dataclass(frozen=True)
class Matcher:
    name: str
    op: str  # =, !=, =~, !~
    value: str

    def matches(self, labels: dict[str, str]) -> bool:
        found = labels.get(self.name, "")
        if self.op in ("=", "!="):
            return (found == self.value) == (self.op == "=")
        return bool(re.fullmatch(self.value, found)) == (self.op == "=~")

    def __str__(self) -> str:
        return f"{self.name}{self.op}{_quote(self.value)}"


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _unquote(raw: str) -> str | None:
    """A matcher value: "double quoted" with \\ escapes, or bare as Alertmanager allows."""
    if not raw.startswith('"'):
        return None if '"' in raw else raw
    if len(raw) < 2 or not raw.endswith('"'):
        return None
    out, i, body = [], 0, raw[1:-1]
    while i < len(body):
        ch = body[i]
        if ch == '"':
            return None
        if ch == "\\":
            if i + 1 >= len(body) or body[i + 1] not in _ESCAPES:
                return None
            out.append(_ESCAPES[body[i + 1]])
            i += 2
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def parse_matcher(text: str) -> Matcher:
    found = _MATCHER.fullmatch(text) if isinstance(text, str) else None
    value = _unquote(found.group(3)) if found else None
    if found is None or value is None:
        raise PydanticCustomError(
            "matcher",
            'expected a matcher as Alertmanager writes it: name="value", name!="value", '
            'name=~"regex" or name!~"regex"',
        )
    name, op = found.group(1), found.group(2)
    if op in ("=~", "!~"):
        try:
            re.compile(value)
        except re.error as exc:
            raise PydanticCustomError("matcher", f"invalid regex {value!r}: {exc}") from None
    return Matcher(name, op, value)


def _matcher_text(value: object) -> str:
    parse_matcher(value)  # type: ignore[arg-type]
    return value  # type: ignore[return-value]


MatcherText = Annotated[str, BeforeValidator(_matcher_text)]


class CircuitBreaker(Frozen):
    max_runs: PositiveInt = Field(3, description="At most this many runs auto-started, across runbooks, per window.")
    window: Duration = Field(timedelta(hours=1), description="The sliding window the breaker counts in.")


class Rule(Frozen):
    name: Text = Field(description="Shown in every decision this rule makes.")
    match: list[MatcherText] = Field(
        min_length=1, description='Alertmanager label matchers, all of which must match: name="v", name=~"re", name!="v", name!~"re".'
    )
    runbook: Text = Field(description="Runbook file, relative to this rules file.")
    region_label: Text = Field("region", description="The alert label naming the failed region.")
    action: Literal["failover"] = Field("failover", description="What a matching alert starts.")
    strategy: Literal["graceful", "ungraceful"] = Field(
        "graceful", description="graceful: prepare, gate, then DNS; ungraceful: DNS first (the region is dark)."
    )
    mode: Literal["auto", "approval"] = Field(
        "auto",
        description="auto: the runbook's approvals.failover decides (when-auto-triggered waits for `drpilot approve`); "
        "approval: the run always waits for `drpilot approve`.",
    )
    for_: Duration = Field(
        timedelta(0), alias="for", description="The alert must have fired this long (from its startsAt) before it starts a run."
    )

    @field_validator("runbook")
    @classmethod
    def _runbook_loads(cls, value: str, info: ValidationInfo) -> str:
        base = (info.context or {}).get("base")
        if base is None:
            return value
        try:
            load_runbook(Path(base) / value)
        except RunbookError as exc:
            first = exc.problems[0]
            more = f" (and {len(exc.problems) - 1} more; `drpilot runbook validate` lists them)" if len(exc.problems) > 1 else ""
            raise PydanticCustomError("runbook", "runbook {file}: {problem}{more}", {
                "file": value, "problem": f"{first.line}:{first.column}: {first.path + ': ' if first.path else ''}{first.message}",
                "more": more,
            }) from None
        return value

    def matchers(self) -> list[Matcher]:
        return [parse_matcher(m) for m in self.match]


class RulesFile(Frozen):
    apiVersion: Literal["drpilot/v1"] = Field(description="Schema version of this file.")
    kind: Literal["WebhookRules"] = Field(description="Always WebhookRules.")
    circuit_breaker: CircuitBreaker = Field(default_factory=CircuitBreaker)
    rules: list[Rule] = Field(min_length=1, description="Tried in order; the first whose matchers all match decides.")


@dataclass(frozen=True)
class Route:
    """A rule with its runbook loaded and its matchers compiled."""

    rule: Rule
    runbook: Runbook
    matchers: list[Matcher]

    def matches(self, labels: dict[str, str]) -> bool:
        return all(m.matches(labels) for m in self.matchers)


@dataclass(frozen=True)
class Routing:
    routes: list[Route]
    breaker: CircuitBreaker

    def route(self, labels: dict[str, str]) -> Route | None:
        return next((r for r in self.routes if r.matches(labels)), None)


def parse_rules(text: str, filename: str, base: Path) -> RulesFile:
    return parse_document(
        text, filename, RulesFile, error=RulesError, top="apiVersion, kind, rules", context={"base": base}
    )


def load_rules(path: str | Path) -> Routing:
    """The rules file with every runbook it names loaded; RulesError lists every problem."""
    path = Path(path)
    rules = parse_rules(read_document(path, RulesError), str(path), path.parent)
    routes = [Route(rule, load_runbook(path.parent / rule.runbook), rule.matchers()) for rule in rules.rules]
    return Routing(routes=routes, breaker=rules.circuit_breaker)


def rules_schema() -> dict:
    document = RulesFile.model_json_schema(by_alias=True)
    document["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    document["title"] = "drpilot webhook rules (drpilot/v1)"
    return document

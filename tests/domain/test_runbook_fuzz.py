"""Whatever bytes a runbook file holds, the loader returns a Runbook or raises RunbookError:
never another exception, never a traceback for the on-call engineer."""

from __future__ import annotations

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drpilot.domain.loader import RunbookError, parse_runbook
from drpilot.domain.runbook import Runbook
from tests.support.paths import RUNBOOKS

EXAMPLES = [p.read_text() for p in sorted(RUNBOOKS.glob("*.yaml"))]

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=True),
    st.text(max_size=20), st.sampled_from(["5m", "90s", "primary", "standby", "route53", "s3://b/k/", "http://x"]),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)),
    max_leaves=20,
)


def load_or_error(text: str) -> None:
    try:
        assert isinstance(parse_runbook(text, "fuzz.yaml"), Runbook)
    except RunbookError as exc:
        assert exc.problems, "a RunbookError always says why"
        for problem in exc.problems:
            assert str(problem).startswith("fuzz.yaml:")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=300))
def test_random_text(text):
    load_or_error(text)


@settings(max_examples=200, deadline=None)
@given(values)
def test_random_yaml_documents(document):
    load_or_error(yaml.safe_dump(document))


def _paths(node, prefix=()):
    yield prefix
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _paths(value, (*prefix, i))


def _replace(node, path, value):
    if not path:
        return value
    head, *rest = path
    copy = dict(node) if isinstance(node, dict) else list(node)
    copy[head] = _replace(node[head], rest, value)
    return copy


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(range(len(EXAMPLES))), st.data(), values)
def test_mutated_examples(index, data, replacement):
    document = yaml.safe_load(EXAMPLES[index])
    path = data.draw(st.sampled_from(list(_paths(document))))
    load_or_error(yaml.safe_dump(_replace(document, path, replacement), sort_keys=False))


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(range(len(EXAMPLES))), st.integers(0, 10**6), st.integers(1, 5), st.text(max_size=5))
def test_byte_level_mutations(index, position, length, insert):
    text = EXAMPLES[index]
    position %= len(text)
    load_or_error(text[:position] + insert + text[position + length:])

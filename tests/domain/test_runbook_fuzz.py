"""Whatever bytes a runbook file holds, the loader returns a Runbook or raises RunbookError:
never another exception, never a traceback for the on-call engineer."""

from __future__ import annotations

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drpilot.domain.loader import RunbookError, parse_runbook
from drpilot.domain.runbook import Runbook
from tests.support.fuzz import STRUCTURAL, mutate, nested
from tests.support.paths import RUNBOOKS

EXAMPLES = [p.read_text() for p in sorted(RUNBOOKS.glob("*.yaml"))]

values = nested(st.one_of(
    st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=True),
    st.text(max_size=20), st.sampled_from(["5m", "90s", "primary", "standby", "route53", "s3://b/k/", "http://x"]),
))


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


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(range(len(EXAMPLES))), st.sampled_from(STRUCTURAL), st.data())
def test_mutated_examples(index, kind, data):
    document = mutate(data.draw, yaml.safe_load(EXAMPLES[index]), kind, values)
    load_or_error(yaml.safe_dump(document, sort_keys=False))


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(range(len(EXAMPLES))), st.integers(0, 10**6), st.integers(1, 5), st.text(max_size=5))
def test_byte_level_mutations(index, position, length, insert):
    text = EXAMPLES[index]
    position %= len(text)
    load_or_error(text[:position] + insert + text[position + length:])

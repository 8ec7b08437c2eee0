"""The console's policy file: validated like a runbook (FILE:LINE:COL), and every refusal one
line naming the rule that decided it."""

from __future__ import annotations

import pytest

from drpilot.console.policy import Policy, PolicyError, load_policy, parse_policy
from tests.support.console import POLICY


def problems(text: str) -> list[str]:
    with pytest.raises(PolicyError) as raised:
        parse_policy(text, "policy.yaml")
    return [str(p) for p in raised.value.problems]


def test_a_bad_policy_says_where_and_what():
    assert problems("grants:\n  - who: [alice@example.com]\n    may: [view, fly]\n") == [
        "policy.yaml:3:17: grants[0].may[1]: expected one of 'view', 'approve', 'start' or 'abort', got \"fly\""
    ]
    [typo] = problems("grant:\n  - who: [alice@example.com]\n    may: [view]\n")
    assert typo.startswith("policy.yaml:1:1: grant: unknown field") and "grants" in typo
    [empty] = problems("grants:\n  - who: []\n    may: [view]\n")
    assert empty.startswith("policy.yaml:2:10: grants[0].who:")


def test_an_unreadable_policy_is_one_line(tmp_path):
    with pytest.raises(PolicyError) as raised:
        load_policy(tmp_path / "missing.yaml")
    assert str(raised.value) == f"{tmp_path / 'missing.yaml'}:1:1: cannot read the file: No such file or directory"


def test_without_a_policy_everyone_views_and_nobody_acts():
    policy = Policy.default()
    assert policy.refusal("alice@example.com", "view", "llm-inference") is None
    assert policy.refusal("alice@example.com", "approve", "llm-inference") == (
        "alice@example.com may not approve llm-inference: the default policy lets everyone view and nobody act "
        "(start the console with --policy FILE granting it)"
    )


def test_grants_by_identity_group_and_runbook_glob():
    policy = parse_policy(POLICY, "policy.yaml")
    assert policy.refusal("alice@example.com", "abort", "llm-inference") is None
    assert policy.refusal("bob@example.com", "start", "llm-inference") is None  # through group:oncall
    assert policy.refusal("bob@example.com", "start", "search") == (
        "bob@example.com may not start search: no grant in policy.yaml names bob@example.com (or a group of theirs) for search"
    )
    assert policy.refusal("carol@example.com", "abort", "search") == (
        "carol@example.com may not abort search: in policy.yaml, grants[1] gives view, not abort"
    )
    # A policy that grants view makes viewing a grant too.
    assert policy.refusal("mallory@example.com", "view", "llm-inference") is not None
    assert parse_policy("grants:\n  - who: [a]\n    may: [approve]\n", "p.yaml").refusal("mallory", "view", "x") is None

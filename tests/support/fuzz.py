"""Malformed documents for hypothesis: nested values of any shape, and one structural mutation
of a valid document (a value of the wrong type, a field missing, an unknown field). The runbook
fuzz test (tests/domain/test_runbook_fuzz.py) and the bad-input benchmark (bench/bad_input.py) draw
from the same generators."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from hypothesis import strategies as st

STRUCTURAL = ("wrong type", "missing field", "unknown field")
DROP = object()  # what an edit's change returns to remove the value


def nested(scalars: st.SearchStrategy) -> st.SearchStrategy:
    """`scalars`, and lists and mappings of them nested to any depth (at most 20 leaves)."""
    return st.recursive(
        scalars,
        lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)),
        max_leaves=20,
    )


def paths(node: Any, prefix: tuple = ()) -> Iterator[tuple]:
    """Every place in a parsed document, the document itself first: keys and list indexes."""
    yield prefix
    if isinstance(node, dict):
        for key, value in node.items():
            yield from paths(value, (*prefix, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from paths(value, (*prefix, i))


def value_at(node: Any, path: tuple) -> Any:
    for part in path:
        node = node[part]
    return node


def edit(node: Any, path: tuple, change: Callable[[Any], Any]) -> Any:
    """A copy of `node` with the value at `path` replaced by change(value); DROP removes it.
    `node` itself is never changed: parsed examples can be cached and mutated again."""
    if not path:
        return change(node)
    head, *rest = path
    copy: Any = dict(node) if isinstance(node, dict) else list(node)
    new = edit(node[head], tuple(rest), change)
    if new is DROP:
        del copy[head]
    else:
        copy[head] = new
    return copy


def mutate(draw: Callable[[st.SearchStrategy], Any], document: Any, kind: str, values: st.SearchStrategy) -> Any:
    """`document` with one mutation of `kind` (one of STRUCTURAL), drawn with `draw` (a
    composite strategy's, or st.data()'s); wrong values and unknown fields' values from `values`."""
    path = draw(st.sampled_from(list(paths(document))))
    if kind == "wrong type":
        replacement = draw(values)
        return edit(document, path, lambda _: replacement)
    if kind == "missing field":
        return edit(document, path, lambda _: DROP) if path else None
    mappings = [p for p in paths(document) if isinstance(value_at(document, p), dict)]
    where = draw(st.sampled_from(mappings))
    key, value = draw(st.text(min_size=1, max_size=20)), draw(values)
    return edit(document, where, lambda m: {**m, key: value})

"""Every test README's Invariants table names exists, so the table cannot point at nothing."""

from __future__ import annotations

import re

from tests.support.paths import ROOT


def named_tests() -> list[tuple[str, str]]:
    section = (ROOT / "README.md").read_text().split("## Invariants", 1)[1].split("\n## ", 1)[0]
    found, current = [], ""
    for path, name in re.findall(r"`([\w/]+\.py)?(?:::(\w+))?`", section):
        if path and not path.startswith("tests/"):  # a file named by itself: find it under tests/
            (match,) = list((ROOT / "tests").rglob(path))
            path = str(match.relative_to(ROOT))
        current = path or current  # `::name` continues the last file named
        if name:
            found.append((current, name))
    return found


def test_the_invariants_table_names_tests_that_exist():
    tests = named_tests()
    assert len(tests) >= 15
    for path, name in tests:
        source = (ROOT / path).read_text()
        assert re.search(rf"^(async )?def {name}\(", source, re.M), f"README names {path}::{name}, which does not exist"

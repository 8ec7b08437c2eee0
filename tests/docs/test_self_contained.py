"""The repository documents itself: no file points at notes kept outside it, and every
relative link in the Markdown documentation leads to a file that exists.

A reader of a fresh clone has only the clone: a pointer to a design note elsewhere (or a
link to a moved page) is a dead end exactly when someone needs the explanation.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from urllib.parse import unquote

from tests.support.paths import ROOT

HERE = Path(__file__).resolve().relative_to(ROOT).as_posix()

# Notes that live outside the repository, however they are spelled.
OUTSIDE = re.compile(r"DESIGN\.md|STYLE\.md|FACTS\.md|\.\./shared|shared/reference", re.IGNORECASE)
# [text](target) and [text]: target; images too. Code spans are removed before matching.
INLINE_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE_LINK = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)", re.MULTILINE)
CODE = re.compile(r"```.*?```|`[^`\n]*`", re.DOTALL)


def tracked() -> list[str]:
    out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    return [p for p in out.decode().split("\0") if p]


def references_outside(text: str) -> list[str]:
    return [
        f"line {text.count(chr(10), 0, m.start()) + 1}: {m.group(0)}" for m in OUTSIDE.finditer(text)
    ]


def relative_links(markdown: str) -> list[str]:
    prose = CODE.sub("", markdown)
    targets = INLINE_LINK.findall(prose) + REFERENCE_LINK.findall(prose)
    return [t for t in targets if not re.match(r"^[a-z][a-z0-9+.-]*:|^#", t, re.IGNORECASE)]


def test_no_tracked_file_refers_to_notes_outside_the_repository():
    found = []
    for path in tracked():
        if path == HERE:
            continue
        try:
            text = (ROOT / path).read_text(encoding="utf-8")
        except (UnicodeDecodeError, FileNotFoundError, IsADirectoryError):
            continue  # binary, or deleted in the work tree but not yet from the index
        found += [f"{path} {hit}" for hit in references_outside(text)]
    assert not found, (
        "these refer to files outside the repository; point at docs/architecture.md "
        "(or the module that says it) instead:\n" + "\n".join(found)
    )


def test_relative_markdown_links_lead_to_files_that_exist():
    documents = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    assert (ROOT / "docs" / "architecture.md") in documents
    broken = []
    for doc in documents:
        for target in relative_links(doc.read_text(encoding="utf-8")):
            file = unquote(target.split("#", 1)[0])
            if file and not (doc.parent / file).exists():
                broken.append(f"{doc.relative_to(ROOT)}: {target}")
    assert not broken, "relative links to files that do not exist:\n" + "\n".join(broken)


def test_the_checks_see_what_they_look_for():
    # Guards the patterns themselves: a regex that matches nothing would pass any tree.
    assert references_outside("see DESIGN.md section 1") and references_outside("../shared/x")
    assert references_outside("(facts.md)") and references_outside("shared/reference/a.txt")
    assert not references_outside("the runbook reference; a failed region's weight is shared")
    links = relative_links("[a](docs/x.md#y) [b](https://e.org) [c](#top) `[d](no.md)`\n[e]: ../f.md\n")
    assert links == ["docs/x.md#y", "../f.md"]

"""Who may do what in the console (`drpilot console --policy FILE`), validated like a runbook
(FILE:LINE:COL, did-you-mean):

    grants:
      - who: [alice@example.com, group:oncall]   # identities, or group:NAME
        may: [view, approve, start, abort]
        runbooks: ["*"]                          # globs of runbook names
    groups:                                      # optional: the members of each group:NAME
      oncall: [bob@example.com, carol@example.com]

Without a file: every authenticated person may view, nobody may act. `view` is open to every
authenticated person unless some grant names `view`; then it too needs a grant. Pausing and
resuming a run need `approve` (whoever may let a run go on may hold it); `abort` needs abort.
Every refusal is one line naming the rule that decided it.
"""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Literal

from pydantic import Field

from drpilot.domain.loader import DocumentError, parse_document, read_document
from drpilot.domain.runbook import Frozen, Text

Verb = Literal["view", "approve", "start", "abort"]
GROUP = "group:"


class PolicyError(DocumentError):
    """A policy file that cannot be used."""


class Grant(Frozen):
    who: list[Text] = Field(min_length=1, description="Identities (as the identity header carries them) or group:NAME.")
    may: list[Verb] = Field(min_length=1, description="What they may do: view, approve (also pause and resume), start, abort.")
    runbooks: list[Text] = Field(["*"], min_length=1, description="Globs of the runbook names the grant covers.")


class PolicyFile(Frozen):
    grants: list[Grant] = Field(default_factory=list, description="Who may do what, on which runbooks.")
    groups: dict[Text, list[Text]] = Field(default_factory=dict, description="Members of each group:NAME the grants name.")


@dataclass(frozen=True)
class Policy:
    document: PolicyFile
    source: str  # the file, or "the default policy"

    @classmethod
    def default(cls) -> Policy:
        return cls(PolicyFile(), "the default policy")

    def _members(self, who: str) -> set[str]:
        groups = {GROUP + name for name, members in self.document.groups.items() if who in members}
        return {who} | groups

    def _covers(self, grant: Grant, names: set[str], runbook: str) -> bool:
        return bool(names & set(grant.who)) and any(fnmatchcase(runbook, glob) for glob in grant.runbooks)

    def refusal(self, who: str, verb: Verb, runbook: str) -> str | None:
        """None when `who` may `verb` on `runbook`; else one line naming the rule that refused."""
        grants = self.document.grants
        if verb == "view" and not any("view" in g.may for g in grants):
            return None  # nobody restricted viewing: every authenticated person may
        names = self._members(who)
        held = [i for i, g in enumerate(grants) if self._covers(g, names, runbook)]
        if any(verb in grants[i].may for i in held):
            return None
        if not grants:
            return (f"{who} may not {verb} {runbook}: {self.source} lets everyone view and nobody act "
                    "(start the console with --policy FILE granting it)")
        if held:
            gives = "; ".join(f"grants[{i}] gives {', '.join(grants[i].may)}" for i in held)
            return f"{who} may not {verb} {runbook}: in {self.source}, {gives}, not {verb}"
        return f"{who} may not {verb} {runbook}: no grant in {self.source} names {who} (or a group of theirs) for {runbook}"


def parse_policy(text: str, filename: str) -> Policy:
    return Policy(parse_document(text, filename, PolicyFile, error=PolicyError, top="grants"), filename)


def load_policy(path: str | Path) -> Policy:
    path = Path(path)
    return parse_policy(read_document(path, PolicyError), str(path))

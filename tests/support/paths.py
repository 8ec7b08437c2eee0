"""Where the repository's files are, for tests run from any directory."""

from __future__ import annotations

import sysconfig
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RUNBOOKS = ROOT / "runbooks"
ROUTE53_RUNBOOK = RUNBOOKS / "llm-inference.yaml"
CLOUDDNS_RUNBOOK = RUNBOOKS / "llm-inference-clouddns.yaml"
ARC_RUNBOOK = RUNBOOKS / "llm-inference-arc.yaml"  # switched by Route 53 ARC routing controls
# The console script of this environment: what a user runs, not `python -m drpilot`.
DRPILOT = Path(sysconfig.get_path("scripts")) / "drpilot"

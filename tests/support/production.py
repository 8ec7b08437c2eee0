"""An interpreter as a production install has it, inside the test venv (which holds the
twin): Python source to run first in a subprocess. The twin's distribution is gone (its
entry points are not listed, its package does not import) and so are the given modules, as
Python reports a package that is not installed."""

from __future__ import annotations

TWIN_DISTRIBUTION = "drpilot-twin"


def without_twin(modules: frozenset[str] | set[str] = frozenset()) -> str:
    blocked = sorted({"drpilot_twin", *modules})
    return f"""
import importlib.metadata, sys

class NotInstalled:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in {blocked!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)

sys.meta_path.insert(0, NotInstalled())
listed = importlib.metadata.entry_points

def entry_points(**selection):
    found = listed(**selection)
    return type(found)(ep for ep in found if not ep.dist or ep.dist.name != {TWIN_DISTRIBUTION!r})

importlib.metadata.entry_points = entry_points
"""

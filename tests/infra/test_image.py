"""The container image (Dockerfile) cannot be built here (no Docker engine); what it relies
on is checked: a pinned base, a non-root user matching the manifests, only the production
dependencies installed, `drpilot` as the entrypoint, and a worker that imports and builds
its activities without the sandbox extra."""

from __future__ import annotations

import contextlib
import re
import subprocess
import sys
from importlib import metadata

import yaml
from packaging.requirements import Requirement

from tests.support.paths import ROOT

DOCKERFILE = (ROOT / "Dockerfile").read_text()


def instructions(name: str) -> list[str]:
    text = DOCKERFILE.replace("\\\n", " ")
    return [line.split(None, 1)[1] for line in text.splitlines() if line.startswith(name + " ")]


def test_base_image_is_pinned_to_an_exact_python_release():
    for base in instructions("FROM"):
        image = base.split()[0]
        assert re.fullmatch(r"python:\d+\.\d+\.\d+-slim-[a-z]+(@sha256:[0-9a-f]{64})?", image), image


def test_installs_only_production_dependencies_with_the_pins():
    installs = [run for run in instructions("RUN") if "pip install" in run]
    assert len(installs) == 1
    assert re.search(r"pip install -c constraints\.txt \.(\s|$)", installs[0]), installs[0]
    assert "[" not in installs[0], "no extras (sandbox, dev) in the production image"


def test_runs_as_the_non_root_user_the_manifests_expect_with_drpilot_as_entrypoint():
    assert instructions("USER") == ["10001:10001"]
    assert instructions("ENTRYPOINT") == ['["drpilot"]']
    assert instructions("CMD") == ['["worker"]']
    for path in (ROOT / "infra/kubernetes/base").glob("*.yaml"):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc["kind"] == "Deployment":
                assert doc["spec"]["template"]["spec"]["securityContext"]["runAsUser"] == 10001


def test_dockerignore_lets_the_copied_sources_in():
    ignore = (ROOT / ".dockerignore").read_text().split()
    for copy in instructions("COPY"):
        if copy.startswith("--from"):
            continue
        for source in copy.split()[:-1]:
            assert f"!{source}" in ignore or f"!{source}/" in ignore, source


def production_closure() -> set[str]:
    """Distributions `pip install .` brings: drpilot's requirements without extras, recursively."""
    seen: set[str] = set()
    todo = [Requirement(r) for r in metadata.requires("drpilot") or []]
    while todo:
        req = todo.pop()
        if req.marker and not req.marker.evaluate({"extra": ""}):
            continue
        name = req.name.lower().replace("_", "-")
        if name in seen:
            continue
        seen.add(name)
        with contextlib.suppress(metadata.PackageNotFoundError):  # an optional one not installed
            todo += [Requirement(r) for r in metadata.requires(name) or []]
    return seen


def test_worker_needs_nothing_from_the_sandbox_extra():
    closure = production_closure()
    sandbox_only = {
        Requirement(r).name.lower()
        for r in metadata.requires("drpilot") or []
        if Requirement(r).marker and Requirement(r).marker.evaluate({"extra": "sandbox"})
    } - closure
    assert "moto" in sandbox_only
    modules = sorted(
        {m for m, dists in metadata.packages_distributions().items() if any(d.lower() in sandbox_only for d in dists)}
    )
    # The worker's whole import path and activity construction, with those modules unimportable.
    script = f"""
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {modules!r}:
            raise ImportError("not in the production image: " + name)
sys.meta_path.insert(0, Block())
import drpilot.cli.main, drpilot.frontdoor.worker, drpilot.frontdoor.health, drpilot.frontdoor.dry_run
from activities.registry import build_activities
from drpilot.domain.settings import Settings
assert build_activities(Settings())
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]

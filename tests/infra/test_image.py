"""The container image (Dockerfile) cannot be built here (no Docker engine); what it relies
on is checked: a pinned base, a non-root user matching the manifests, only the product's
sources in the build context and only its dependencies installed, `drpilot` as the
entrypoint, and a worker that imports and builds its activities without the sandbox twin
(twin/, a distribution of its own) or its requirements."""

from __future__ import annotations

import contextlib
import fnmatch
import re
import subprocess
import sys
import tomllib
from importlib import metadata

import yaml
from packaging.requirements import Requirement

from tests.support.paths import ROOT
from tests.support.production import without_twin

DOCKERFILE = (ROOT / "Dockerfile").read_text()
# What the image's install reads: the product's packaging and its three packages.
PRODUCT_SOURCES = {"pyproject.toml", "constraints.txt", "README.md", "drpilot", "workflows", "activities"}


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


def copied_sources() -> set[str]:
    return {
        source.rstrip("/")
        for copy in instructions("COPY")
        if not copy.startswith("--from")
        for source in copy.split()[:-1]
    }


def test_the_image_copies_only_the_product():
    assert copied_sources() == PRODUCT_SOURCES


def in_build_context(path: str) -> bool:
    """Whether .dockerignore lets `path` (relative, "/"-separated) into the build context:
    the last pattern matching it or a folder above it decides, "!" letting it in."""
    patterns = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()]
    parts = path.split("/")
    inside = [("/".join(parts[:i]), i) for i in range(1, len(parts) + 1)]
    allowed = True
    for pattern in (p for p in patterns if p and not p.startswith("#")):
        negated = pattern.startswith("!")
        glob = pattern.removeprefix("!").rstrip("/")
        for prefix, depth in inside:
            tails = ["/".join(parts[start:depth]) for start in range(depth)] if glob.startswith("**/") else [prefix]
            if any(fnmatch.fnmatchcase(tail, glob.removeprefix("**/")) for tail in tails):
                allowed = negated
                break
    return allowed


def files_under(folder: str) -> list[str]:
    return [
        p.relative_to(ROOT).as_posix()
        for p in (ROOT / folder).rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    ]


def test_dockerignore_lets_the_copied_sources_in():
    for source in copied_sources():
        for path in files_under(source) if (ROOT / source).is_dir() else [source]:
            assert in_build_context(path), path


def test_dockerignore_lets_nothing_of_the_twin_in():
    twin = files_under("twin")
    assert "twin/pyproject.toml" in twin and "twin/drpilot_twin/__init__.py" in twin
    assert [path for path in twin if in_build_context(path)] == []
    assert not in_build_context("drpilot/__pycache__/cli.cpython-311.pyc")


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


def test_worker_needs_nothing_from_the_twin():
    closure = production_closure()
    twin = tomllib.loads((ROOT / "twin/pyproject.toml").read_text())["project"]["dependencies"]
    twin_only = {Requirement(r).name.lower() for r in twin} - closure - {"drpilot"}
    assert "moto" in twin_only
    modules = {m for m, dists in metadata.packages_distributions().items() if any(d.lower() in twin_only for d in dists)}
    # The worker's whole import path and activity construction, as a production install has it.
    script = without_twin(modules) + """
import drpilot.cli.main, drpilot.frontdoor.worker, drpilot.frontdoor.health, drpilot.frontdoor.dry_run
from activities.registry import build_activities
from drpilot.domain.settings import Settings
assert build_activities(Settings())
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]

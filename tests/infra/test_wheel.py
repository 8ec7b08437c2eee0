"""The production wheel holds the product and nothing of the sandbox twin: built here from a
copy of the checkout (the twin's folder beside it, as in a clone) with the venv's own build
backend, offline, and its files listed."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = {"drpilot", "workflows", "activities"}
# Path fragments only the twin's files have: its package, the emulators and their parts.
TWIN_FRAGMENTS = ("drpilot_twin", "sandbox", "moto", "emulator", "model_server", "aws/front",
                  "kube/api", "kube/controllers", "loopback", "faults.py", "users.py")  # fmt: skip


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> zipfile.ZipFile:
    # A copy, so neither a stale build/ nor an egg-info of the checkout reaches the wheel.
    source = tmp_path_factory.mktemp("checkout") / "drpilot"
    shutil.copytree(
        ROOT,
        source,
        ignore=shutil.ignore_patterns(".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".*_cache"),
    )
    out = tmp_path_factory.mktemp("wheel")
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
         "--quiet", "--wheel-dir", str(out), str(source)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr[-3000:]
    [path] = out.glob("drpilot-*.whl")
    with zipfile.ZipFile(path) as archive:
        yield archive


def dist_info(wheel: zipfile.ZipFile, name: str) -> str:
    [path] = [n for n in wheel.namelist() if n.endswith(f".dist-info/{name}")]
    return wheel.read(path).decode()


def test_the_wheel_holds_the_product_packages_only(wheel):
    files = [n for n in wheel.namelist() if ".dist-info/" not in n]
    assert {n.split("/")[0] for n in files} == PRODUCT
    for package in PRODUCT:
        assert f"{package}/__init__.py" in files
    assert "drpilot/cli/main.py" in files and "activities/registry.py" in files
    assert "drpilot/console/static/console.js" in files  # the console's one script ships with it


def test_the_wheel_holds_no_file_of_the_twin(wheel):
    twin = [n for n in wheel.namelist() if any(f in n for f in TWIN_FRAGMENTS)]
    assert twin == []


def test_the_wheel_requires_nothing_of_the_twin_and_offers_it_no_command(wheel):
    metadata = Parser().parsestr(dist_info(wheel, "METADATA"))
    required = {Requirement(r).name.lower() for r in metadata.get_all("Requires-Dist") or []}
    assert required and not required & {"moto", "drpilot-twin"}
    assert "sandbox" not in (metadata.get_all("Provides-Extra") or [])
    # The twin's commands come from the twin's own entry points, never the product's.
    entry_points = dist_info(wheel, "entry_points.txt")
    assert "drpilot = drpilot.cli.main:run" in entry_points
    assert "drpilot.commands" not in entry_points

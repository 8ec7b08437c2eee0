"""Fixtures shared by the activity tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from drpilot_twin.faults import FaultBoard
from drpilot_twin.kube.api import start_kube_clusters, write_kubeconfig

from activities.kube import KubeconfigClients
from drpilot.domain.loader import load_runbook

ROOT = Path(__file__).resolve().parents[2]
RUNBOOK = load_runbook(ROOT / "runbooks" / "llm-inference.yaml")
KUBE_SPEED = 60.0  # pods ready 0.5 s after a scale-up; a Velero restore ~0.4 s


@pytest.fixture
def kube_clusters(tmp_path) -> Iterator[SimpleNamespace]:
    """One Kubernetes API emulator per region of llm-inference.yaml, a kubeconfig for them
    and the clients drpilot builds from it."""
    board = FaultBoard()
    clusters = start_kube_clusters(RUNBOOK, board, speed=KUBE_SPEED)
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", clusters)
    yield SimpleNamespace(board=board, clusters=clusters, kubeconfig=kubeconfig,
                          clients=KubeconfigClients(str(kubeconfig)))
    for cluster in clusters.values():
        cluster.stop()

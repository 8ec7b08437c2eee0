"""Fixtures shared by the activity tests: the twin's AWS front and Kubernetes emulators, and
the clients drpilot builds for them."""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace

import pytest
from drpilot_twin.aws.front import AwsFront
from drpilot_twin.faults import FaultBoard
from drpilot_twin.kube.api import start_kube_clusters, write_kubeconfig

from activities.kube.clusters import KubeconfigClients
from drpilot.domain.loader import load_runbook
from tests.support.aws import SPEED, aws_client
from tests.support.loopback import serving
from tests.support.paths import ROUTE53_RUNBOOK

KUBE_SPEED = 60.0  # pods ready 0.5 s after a scale-up; a Velero restore ~0.4 s


@pytest.fixture(scope="module")
def board() -> FaultBoard:
    return FaultBoard()


@pytest.fixture(scope="module")
def front(board) -> Iterator[AwsFront]:
    with serving(AwsFront(board, speed=SPEED)) as aws:
        yield aws


@pytest.fixture
def s3(front, board):
    """A client of the AWS front, its buckets and faults cleared."""
    front.reset()
    board.clear()
    return aws_client("s3", front.url)


@pytest.fixture
def kube_clusters(tmp_path) -> Iterator[SimpleNamespace]:
    """One Kubernetes API emulator per region of llm-inference.yaml, a kubeconfig for them
    and the clients drpilot builds from it."""
    board = FaultBoard()
    clusters = start_kube_clusters(load_runbook(ROUTE53_RUNBOOK), board, speed=KUBE_SPEED)
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", clusters)
    yield SimpleNamespace(board=board, clusters=clusters, kubeconfig=kubeconfig,
                          clients=KubeconfigClients(str(kubeconfig)))
    for cluster in clusters.values():
        cluster.stop()

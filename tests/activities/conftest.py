"""Fixtures shared by the activity tests: the twin's AWS front and Kubernetes emulators, and
the clients drpilot builds for them."""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace

import pytest
from drpilot_twin.aws.front import AwsFront
from drpilot_twin.faults import FaultBoard
from drpilot_twin.gcs import GcsFront
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


@pytest.fixture(scope="module")
def gcs_front(board, tmp_path_factory) -> Iterator[GcsFront]:
    """fake-gcs-server as a child process behind the twin's front; rewrites paged at 1 MiB."""
    front = GcsFront(board, tmp_path_factory.mktemp("gcs"), rewrite_page_bytes=1024 * 1024)
    front.start()
    yield front
    front.stop()


@pytest.fixture
def gcs(gcs_front, board) -> GcsFront:
    """The front with its log and faults cleared (tests write under prefixes of their own)."""
    gcs_front.forget()
    gcs_front.on_request = None
    board.clear()
    return gcs_front


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

"""A kubeconfig rotated on disk (a new token; the old one revoked) is picked up by the
worker's cached clients without a restart: the next call authenticates with the new one."""

from __future__ import annotations

import os

import pytest
from drpilot_twin.faults import FaultBoard
from drpilot_twin.kube.api import ALL_VERBS, start_kube_clusters, write_kubeconfig
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.contracts import KubeReadInput, VeleroRestoreInput
from activities.kube.activities import KubeActivities
from activities.kube.clusters import KubeconfigClients
from activities.velero import VeleroActivities
from drpilot.domain.loader import load_runbook
from tests.support.paths import ROUTE53_RUNBOOK

RUNBOOK = load_runbook(ROUTE53_RUNBOOK)
REGION = "us-west-2"


@pytest.fixture
def world(tmp_path):
    clusters = start_kube_clusters(RUNBOOK, FaultBoard(), speed=60.0)
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", clusters)
    yield clusters, kubeconfig
    for cluster in clusters.values():
        cluster.stop()


def rotate(clusters, kubeconfig, tmp_path) -> None:
    """Each cluster issues drpilot a new token and revokes the old; the kubeconfig is
    replaced the way a Secret volume update lands (a new file swapped in atomically)."""
    for cluster in clusters.values():
        old, cluster.token = cluster.token, cluster.add_user("drpilot", ALL_VERBS)
        cluster.revoke(old)
    os.replace(write_kubeconfig(tmp_path / "kubeconfig.new", clusters), kubeconfig)


def test_rotated_kubeconfig_is_used_without_a_restart(world, tmp_path):
    clusters, kubeconfig = world
    clients = KubeconfigClients(str(kubeconfig))  # one per worker, for its lifetime
    kube, velero, env = KubeActivities(clients), VeleroActivities(clients), ActivityEnvironment()
    read = KubeReadInput(runbook=RUNBOOK, region=REGION)
    assert env.run(kube.read, read).deployments

    for cluster in clusters.values():
        cluster.revoke(cluster.token)  # the old credential stops working first
    with pytest.raises(ApplicationError) as caught:
        env.run(kube.read, read)
    assert caught.value.type == "KubeUnauthorized"

    rotate(clusters, kubeconfig, tmp_path)
    assert env.run(kube.read, read).deployments
    restore = VeleroRestoreInput(runbook=RUNBOOK, region=REGION, restore_name="after-rotation", speed=60.0)
    assert env.run(velero.restore, restore).phase == "Completed"

"""The twin's container registries: one ECR registry per region (moto), holding each
workload's image in the region that runs it, as a per-region replicated ECR would.

The Deployments the Kubernetes emulator seeds pull `ACCOUNT.dkr.ecr.REGION.amazonaws.com/
RUNBOOK/DEPLOYMENT:sandbox` from their own region; `image_missing.REGION=IMAGE` makes that
region's DescribeImages answer ImageNotFoundException for it (the AWS front) and its pulls
fail (the emulator's kubelet).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from typing import Any

from drpilot.domain.runbook import Runbook

ACCOUNT = "123456789012"  # moto's account
TAG = "sandbox"


def aws_region(region: str) -> bool:
    """Whether ECR serves `region` (a runbook on Google Cloud names GCP regions)."""
    import boto3

    return region in boto3.session.Session().get_available_regions("ecr")


def ecr_image(region: str, runbook: str, deployment: str) -> str:
    return f"{ACCOUNT}.dkr.ecr.{region}.amazonaws.com/{runbook}/{deployment}:{TAG}"


def workload_image(region: str, runbook: str, deployment: str) -> str:
    """The image a seeded Deployment runs: its region's ECR in AWS, another registry elsewhere."""
    if aws_region(region):
        return ecr_image(region, runbook, deployment)
    return f"registry.example.com/{runbook}/{deployment}:{TAG}"


def _manifest(repository: str) -> str:
    config = hashlib.sha256(repository.encode()).hexdigest()
    return json.dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": 7023, "digest": f"sha256:{config}"},
        "layers": [],
    })


def seed_ecr(client_for: Any, runbook: Runbook) -> None:
    """Each region's repositories and images (`client_for(region)`: an ECR client to moto)."""
    for region in filter(aws_region, runbook.regions):
        ecr = client_for(region)
        for w in runbook.workloads_in(region):
            repository = f"{runbook.name}/{w.deployment}"
            with contextlib.suppress(ecr.exceptions.RepositoryAlreadyExistsException):
                ecr.create_repository(repositoryName=repository)
            with contextlib.suppress(ecr.exceptions.ImageAlreadyExistsException):
                ecr.put_image(repositoryName=repository, imageManifest=_manifest(repository), imageTag=TAG)

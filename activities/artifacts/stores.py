"""The object stores drpilot reaches, built once from their clients: what artifacts and
drill evidence share (each store is built at its first use, see objects.Stores)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from activities.artifacts.gcs import GcsObjects, gcs_client
from activities.artifacts.objects import Stores
from activities.artifacts.s3 import S3Objects
from activities.credentials import aws_config
from drpilot.domain.settings import Settings


def build_stores(s3: Any, gcs: Callable[[], Any]) -> Stores:
    """`s3`: a boto3 S3 client; `gcs`: builds the google-cloud-storage client when needed."""
    return Stores(s3=lambda: S3Objects(s3), gs=lambda: GcsObjects(gcs()))


def stores_from_settings(settings: Settings) -> Stores:
    import boto3

    # AWS_ENDPOINT_URL(_S3) and credentials from the environment, as boto3 reads them.
    return build_stores(boto3.session.Session().client("s3", config=aws_config()), lambda: gcs_client(settings))

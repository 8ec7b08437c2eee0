"""Clients of the twin's AWS endpoints (its front, or moto behind it), signed with the fake
credentials the twin accepts."""

from __future__ import annotations

from typing import Any

import boto3
from botocore.config import Config
from drpilot_twin.aws.moto_server import AWS_ENV

# The twin's AWS front and the activities that wait on it run this much faster than AWS:
# 60 simulated seconds of Glacier take 0.6 s, 30 of a Route53 change PENDING 0.3 s.
SPEED = 100.0


def aws_client(service: str, url: str, config: Config | None = None) -> Any:
    return boto3.client(
        service,
        endpoint_url=url,
        region_name=AWS_ENV["AWS_DEFAULT_REGION"],
        aws_access_key_id=AWS_ENV["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=AWS_ENV["AWS_SECRET_ACCESS_KEY"],
        config=config,
    )

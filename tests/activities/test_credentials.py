"""A rotated AWS key on disk is used from the next call on, without a worker restart."""

from __future__ import annotations

import pytest

from activities.artifacts.activities import ArtifactActivities
from drpilot.domain.settings import Settings


def write_key(path, key_id: str) -> None:
    path.write_text(f"[default]\naws_access_key_id = {key_id}\naws_secret_access_key = secret-{key_id}\n")


def signing_key(client) -> str:
    # The credentials the client signs its next request with (botocore's own signer).
    return client._request_signer._credentials.get_frozen_credentials().access_key


@pytest.fixture
def credentials_file(tmp_path, monkeypatch):
    path = tmp_path / "credentials"
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(path))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    return path


def test_a_rotated_key_is_picked_up_without_a_restart(credentials_file):
    write_key(credentials_file, "AKIAOLDKEY0001")
    s3 = ArtifactActivities.from_settings(Settings())._s3  # as the worker builds it
    first = s3.current()
    assert signing_key(first) == "AKIAOLDKEY0001"
    assert s3.current() is first  # unchanged files: the same client, no rebuild per call
    write_key(credentials_file, "AKIANEWKEY00002")  # rotated (a Secret volume swaps the file)
    assert signing_key(s3.current()) == "AKIANEWKEY00002"
    assert s3.meta.region_name == "us-east-1"  # used as the client itself

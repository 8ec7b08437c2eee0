"""Provider credentials that are not there: one sentence naming what to give the worker,
non-retryable, never a traceback. Empty environments only: no request leaves loopback
(the SDKs fail before sending, and their metadata-server lookups are pointed at a closed
loopback port or switched off)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.artifacts.activities import ArtifactActivities
from activities.contracts import ArtifactInput
from drpilot.cli.twin import INSTALL
from drpilot.domain.loader import load_runbook
from drpilot.domain.settings import load_settings
from tests.support.paths import ROOT, RUNBOOKS

CLOSED = "127.0.0.1:1"  # nothing listens: a lookup that slips through fails on loopback


def empty_env(home) -> dict[str, str]:
    return {
        "PATH": "/usr/bin:/bin",
        "HOME": str(home),  # no ~/.aws, no ~/.config/gcloud
        "AWS_CONFIG_FILE": str(home / "none"),
        "AWS_SHARED_CREDENTIALS_FILE": str(home / "none"),
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_ENDPOINT_URL": f"http://{CLOSED}",
        "NO_GCE_CHECK": "true",
        "GCE_METADATA_HOST": CLOSED,
        "GCE_METADATA_IP": CLOSED,
    }


def test_cloud_dns_without_application_default_credentials_is_one_line(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "drpilot", "runbook", "plan", str(RUNBOOKS / "llm-inference-clouddns.yaml"),
         "--action", "failover", "--from", "us-central1"],
        capture_output=True, text=True, cwd=ROOT, env=empty_env(tmp_path), timeout=60,
    )
    project = load_runbook(RUNBOOKS / "llm-inference-clouddns.yaml").spec.dns.project
    assert (result.returncode, result.stderr.strip()) == (
        1,
        f"error: cannot read live state: no Google Application Default Credentials for Cloud DNS "
        f"(project {project!r}): give the worker a service account (GOOGLE_APPLICATION_CREDENTIALS, "
        "or workload identity), or run `gcloud auth application-default login`",
    )


def test_s3_without_credentials_is_non_retryable_and_says_what_to_give(tmp_path, monkeypatch):
    import boto3

    # A worker process starts with no boto3 session; an earlier test's would hold the
    # credentials it found, as a long-lived process keeps them.
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)
    for name in list(os.environ):
        monkeypatch.delenv(name)
    for name, value in empty_env(tmp_path).items():
        monkeypatch.setenv(name, value)
    runbook = load_runbook(RUNBOOKS / "llm-inference.yaml")
    model = runbook.spec.models[0]
    activities = ArtifactActivities.from_settings(load_settings())
    with pytest.raises(ApplicationError) as caught:
        ActivityEnvironment().run(
            activities.verify, ArtifactInput(runbook=runbook, region="us-west-2", model=model.name, version=model.version)
        )
    assert caught.value.non_retryable and caught.value.type == "S3NoCredentials"
    assert caught.value.message.startswith("no AWS credentials for S3 while listing s3://models-usw2/")
    assert caught.value.message.endswith("give the worker an AWS role or AWS_* credentials")


def test_sandbox_up_without_the_twins_requirements_says_how_to_install_them(tmp_path):
    # A partial install of the twin: moto is not there (an import hook plays the missing package,
    # raising what Python raises for it; nothing else in the interpreter changes).
    hide_moto = (
        "import importlib.abc, sys\n"
        "class Missing(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'moto' or name.startswith('moto.'):\n"
        "            raise ModuleNotFoundError(f\"No module named {name!r}\", name=name)\n"
        "sys.meta_path.insert(0, Missing())\n"
        "from drpilot.cli.main import run\n"
        "run('drpilot')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", hide_moto, "sandbox", "up", "--runbook", str(RUNBOOKS / "llm-inference.yaml"),
         "--state-dir", str(tmp_path / "state"), "--no-temporal", "--no-observability"],
        capture_output=True, text=True, cwd=ROOT, env={**os.environ, **empty_env(tmp_path)}, timeout=60,
    )
    assert (result.returncode, result.stderr.strip()) == (
        1, f"`drpilot sandbox up` needs the twin's requirements (moto is not installed): {INSTALL}"
    )

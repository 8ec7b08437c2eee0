"""`drpilot runbook plan` names each file an emergency restore would bring back from Glacier,
its tier and how long Glacier takes for it; from a Cloud Storage archive, that it is read at
once and its retrieval billed."""

from __future__ import annotations

import os
import subprocess

from drpilot_twin.faults import Faults

from tests.support.commands import plan
from tests.support.paths import CLOUDDNS_RUNBOOK, DRPILOT, ROUTE53_RUNBOOK


def test_plan_says_which_files_glacier_restores_and_how_long(twin_factory):
    twin = twin_factory(ROUTE53_RUNBOOK, faults=Faults(region_down=frozenset({"us-east-1"})))
    twin._s3.delete_object(Bucket="models-usw2", Key="llm-7b/2024-01-15/model.safetensors")
    result = plan({**os.environ, **twin.env()}, "--action", "failover", "--from", "us-east-1")
    assert result.returncode == 0, result.stderr
    assert "restore from the Glacier archive llm-7b 2024-01-15 in us-west-2: 1 file(s) (model.safetensors)" in result.stdout
    assert "  note: us-west-2: llm-7b model.safetensors (8192 bytes) from Glacier Expedited: 1m to 5m" in result.stdout, result.stdout
    assert twin.aws.log.restore_requests == {}  # planned, not requested


def test_plan_says_a_cloud_storage_archive_is_read_at_once_and_its_retrieval_billed(twin_factory):
    twin = twin_factory(CLOUDDNS_RUNBOOK, faults=Faults(region_down=frozenset({"us-central1"})))
    twin.board.update(gcs_object_missing=["europe-west4:llama-8b-instruct"])
    env = {**os.environ, **twin.env()}
    result = subprocess.run(
        [str(DRPILOT), "runbook", "plan", str(CLOUDDNS_RUNBOOK), "--action", "failover", "--from", "us-central1"],
        env=env, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert ("restore from the Cloud Storage archive llama-8b-instruct 3.1-2024-07 in europe-west4: 1 file(s) "
            "(model.safetensors)") in result.stdout, result.stdout
    assert ("  note: europe-west4: llama-8b-instruct model.safetensors (8192 bytes) from Cloud Storage ARCHIVE: "
            "read at once (no restore wait), retrieval billed per GB") in result.stdout, result.stdout
    assert not [c for c in twin.gcs.calls() if "rewriteTo" in c.path]  # planned, not copied

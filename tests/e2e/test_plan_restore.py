"""`drpilot runbook plan` names each file an emergency restore would bring back from Glacier,
its tier and how long Glacier takes for it."""

from __future__ import annotations

import os

from drpilot_twin.faults import Faults

from tests.support.commands import plan
from tests.support.paths import ROUTE53_RUNBOOK


def test_plan_says_which_files_glacier_restores_and_how_long(twin_factory):
    twin = twin_factory(ROUTE53_RUNBOOK, faults=Faults(region_down=frozenset({"us-east-1"})))
    twin._s3.delete_object(Bucket="models-usw2", Key="llm-7b/2024-01-15/model.safetensors")
    result = plan({**os.environ, **twin.env()}, "--action", "failover", "--from", "us-east-1")
    assert result.returncode == 0, result.stderr
    assert "restore from the Glacier archive llm-7b 2024-01-15 in us-west-2: 1 file(s) (model.safetensors)" in result.stdout
    assert "  note: us-west-2: llm-7b model.safetensors (8192 bytes) from Glacier Expedited: 1m to 5m" in result.stdout, result.stdout
    assert twin.aws.log.restore_requests == {}  # planned, not requested

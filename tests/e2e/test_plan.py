"""`drpilot runbook plan`: reads the twin's live state, prints the changes, changes nothing."""

from __future__ import annotations

import os
import subprocess
import uuid
from datetime import UTC, datetime

from drpilot_twin.faults import Faults

from activities.contracts import ColdStart
from tests.support.aws import aws_client
from tests.support.commands import plan
from tests.support.paths import ARC_RUNBOOK, DRPILOT, ROUTE53_RUNBOOK
from workflows.types import DrillResult, RunResult, WorldState


def test_plan_failover_and_failback_change_nothing(twin_factory):
    twin = twin_factory(ROUTE53_RUNBOOK, faults=Faults(region_down=frozenset({"us-east-1"})))
    env = {**os.environ, **twin.env()}
    failover = plan(env, "--action", "failover", "--from", "us-east-1")
    assert failover.returncode == 0, failover.stderr
    lines = failover.stdout.splitlines()
    assert lines[0] == "plan: failover of llm-inference (nothing is changed)"
    assert "  1. scale us-west-2 ml-serving/inference-service: 1 -> 6 replicas (active)" in lines
    assert ("  5. DNS us-east-1 100, us-west-2 0 -> us-east-1 0, us-west-2 100 in one change, "
            "then wait TTL 60s") in lines
    assert ("  note: us-west-2: capacity: us-west-2 needs 5 pods of 1 nvidia.com/gpu (ml-serving/inference-service) "
            "and 2 pods of 1 nvidia.com/gpu (ml-serving/inference-gateway): 7 fit now, "
            "NodePool gpu may add 0 nvidia.com/gpu (limit 16): fits") in lines
    assert "  note: us-west-2: quota: the scale-out starts no new node" in lines
    assert any(line.startswith("  note: us-west-2: images: 2 image(s) present; ") for line in lines), lines
    # Nothing moved: DNS and the DR region are as seeded.
    assert twin.weights() == {"us-east-1": 100, "us-west-2": 0}
    assert twin.ready_replicas("us-west-2")["ml-serving/inference-service"][0] == 1
    assert twin.aws.change_count == 0

    failback = plan(env, "--action", "failback", "--to", "us-east-1")
    assert failback.returncode == 0, failback.stderr
    assert "  note: DNS already at us-east-1 100, us-west-2 0: no traffic to shift" in failback.stdout


def test_plan_warns_that_a_region_short_of_gpus_stops_a_graceful_failover(twin_factory, tmp_path):
    # Its own evidence bucket: moto's S3 is one per process and other tests write newer packs.
    bucket = f"dr-evidence-{uuid.uuid4().hex[:12]}"
    runbook = tmp_path / "llm-inference.yaml"
    runbook.write_text(ROUTE53_RUNBOOK.read_text().replace("s3://dr-evidence/drills/", f"s3://{bucket}/drills/"))
    twin = twin_factory(runbook, faults=Faults(gpu_free={"us-west-2": 2}))
    # The newest drill's evidence pack: its failover (speed 1) brought us-west-2 up in 5m20s.
    started = datetime(2026, 12, 1, 10, tzinfo=UTC)
    cold = ColdStart(workload="ml-serving/inference-service", pods=5, region="us-west-2", ready=300.0, warmed=320.0)
    failover_run = RunResult(run_id="x", status="completed", phases=[], rto_seconds=None, objective_rto_seconds=300,
                             final_state=WorldState(), speed=1, action="failover", runbook="llm-inference", cold_starts=[cold])
    pack = DrillResult(drill_id="drill:llm-inference-1", runbook="llm-inference", mode="live", from_region="us-east-1",
                       status="failed", objective_rto_seconds=300, started_at=started, failover=failover_run)
    aws_client("s3", twin.env()["AWS_ENDPOINT_URL"]).put_object(
        Bucket=bucket, Key="drills/llm-inference/20261201T100000Z-live.json", Body=pack.model_dump_json())
    failover = plan({**os.environ, **twin.env()}, "--action", "failover", "--from", "us-east-1", runbook=runbook)
    assert failover.returncode == 0, failover.stderr
    warning = next(line for line in failover.stdout.splitlines() if "capacity" in line)
    assert warning.endswith(
        ": 2 fit now, NodePool gpu may add 0 nvidia.com/gpu (limit 16): short by 5 pods (5 nvidia.com/gpu); "
        "a graceful failover stops in preflight, changing nothing (guardrails.capacity: fail); an ungraceful one goes on"
    ), warning
    assert "  warning: us-west-2: cold start: 5 pods ~ 5m to ready, 5m20s to warmed, measured in the drill of 2026-12-01: " \
        "longer than the 3m50s the RTO (5m) leaves for it after the DNS TTL and the health gate; keep more standby " \
        "replicas warm, shorten the image pull and model load, or revisit objectives.rto" in failover.stdout.splitlines()


def test_plan_rejects_an_unknown_region_in_one_line(twin_factory):
    twin = twin_factory(ROUTE53_RUNBOOK)
    result = plan({**os.environ, **twin.env()}, "--action", "failover", "--from", "eu-west-9")
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "error: failed region 'eu-west-9' is not a region of runbook 'llm-inference'; "
        "regions are us-east-1, us-west-2"
    )


def test_plan_of_a_runbook_switched_by_routing_controls_lists_the_emergency_calls(twin_factory):
    twin = twin_factory(ARC_RUNBOOK, faults=Faults(region_down=frozenset({"us-east-1"})))
    env = {**os.environ, **twin.env()}
    failover = subprocess.run([str(DRPILOT), "runbook", "plan", str(ARC_RUNBOOK), "--action", "failover", "--from", "us-east-1"],
                              env=env, capture_output=True, text=True, timeout=60)
    assert failover.returncode == 0, failover.stderr
    assert "control plane is served from" not in failover.stdout  # no us-east-1 warning: ARC's data plane switches
    dns = next(line for line in failover.stdout.splitlines() if "routing controls" in line)
    assert "us-east-1 100, us-west-2 0 -> us-east-1 0, us-west-2 100 by routing controls us-east-1=Off us-west-2=On" in dns
    assert "ONE UpdateRoutingControlStates" in dns and "no ChangeResourceRecordSets" in dns
    assert twin.routing_controls() == {"us-east-1": "On", "us-west-2": "On"}  # nothing changed
    assert twin.arc.log.updates == 0

"""`drpilot drill ...` at the front door: mistakes are one sentence and no traceback, and
`drill history` reads evidence packs from S3 (moto over HTTP) into a table and a trend."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from drpilot_twin.aws.moto_server import AWS_ENV

from activities.contracts import ColdStart
from tests.support.aws import aws_client
from tests.support.commands import assert_whole, drpilot
from tests.support.paths import RUNBOOKS
from workflows.types import DrillResult, PhaseRecord, RunResult, WorldState

RUNBOOK = str(RUNBOOKS / "llm-inference.yaml")
NO_DRILLS = str(RUNBOOKS / "llm-inference-clouddns.yaml")


def test_a_rehearsal_outside_a_sandbox_is_refused_saying_how():
    env = {"DRPILOT_SANDBOX": ""}
    for args in (("drill", "run", RUNBOOK, "--yes"), ("drill", "schedule", RUNBOOK, "--cron", "0 10 * * TUE")):
        result = drpilot(*args, **env)
        assert (result.returncode, result.stderr.strip()) == (2, (
            "a rehearsal drill runs against a sandbox twin, and DRPILOT_SANDBOX is not set: `source DIR/env` of "
            "`drpilot sandbox up` first, or pass --mode live for the real environment"
        ))


def test_a_runbook_without_drills_and_bad_options_are_named():
    result = drpilot("drill", "run", NO_DRILLS, "--mode", "live", "--yes")
    assert result.returncode == 2
    assert result.stderr.strip().startswith(f"{NO_DRILLS}: spec.drills is missing: add drills.evidence")
    result = drpilot("drill", "run", RUNBOOK, "--mode", "game", "--yes")
    assert (result.returncode, result.stderr.strip()) == (2, "--mode: expected rehearsal or live, got 'game'")
    result = drpilot("drill", "run", RUNBOOK, "--mode", "live", "--from", "mars-1", "--yes")
    assert (result.returncode, result.stderr.strip()) == (2, "unknown region 'mars-1'; llm-inference has us-east-1, us-west-2")
    result = drpilot("drill", "schedule", RUNBOOK, "--mode", "live", "--cron", "0 10 * * TUE", "--blackout", "12-32..01-05")
    assert (result.returncode, result.stderr.strip()) == (2, "error: --blackout '12-32..01-05': 12-32 is not a date")
    result = drpilot("drill", "run", RUNBOOK, "--mode", "live")
    assert result.returncode == 2
    assert "without confirmation: pass --yes" in result.stderr


def test_unreachable_temporal_is_one_sentence():
    for args in (("drill", "run", RUNBOOK, "--mode", "live", "--yes"), ("drill", "list"), ("drill", "pause", "llm-inference")):
        result = drpilot(*args, DRPILOT_TEMPORAL_ADDRESS="127.0.0.1:1")
        assert result.returncode == 1
        assert result.stderr.strip().startswith("error: cannot reach Temporal at 127.0.0.1:1"), result.stderr
        assert "Traceback" not in result.stderr


def failover(ready: float, warmed: float) -> RunResult:
    """A rehearsal at speed 10 whose two workloads came up in `ready` / `warmed` seconds (at speed 1)."""
    colds = [ColdStart(workload=w, pods=5, region="us-west-2", scheduled=0.2, ready=ready / 10 - i, warmed=warmed / 10)
             for i, w in enumerate(("ml-serving/inference-service", "ml-serving/inference-gateway"))]
    return RunResult(run_id="failover:llm-inference", status="completed", phases=[], rto_seconds=None, objective_rto_seconds=900,
                     final_state=WorldState(), speed=10, action="failover", runbook="llm-inference", cold_starts=colds)


def pack(started: datetime, rto_unscaled: float | None, status: str = "completed", run: RunResult | None = None) -> DrillResult:
    phases = []
    at = started
    for name, seconds in (("admission", 0.1), ("preflight", 0.4), ("failover", 95.0), ("soak", 600.0), ("failback", 4500.0)):
        phases.append(PhaseRecord(name=name, started_at=at, ended_at=at + timedelta(seconds=seconds), outcome="ok"))
        at += timedelta(seconds=seconds)
    return DrillResult(
        drill_id=f"drill:llm-inference-{started:%Y-%m-%dT%H:%M:%SZ}", runbook="llm-inference", mode="live",
        from_region="us-east-1", status=status, phases=phases, rto_seconds=rto_unscaled,
        rto_seconds_unscaled=rto_unscaled, objective_rto_seconds=900, rto_met=None if rto_unscaled is None else rto_unscaled <= 900,
        started_at=started, ended_at=at, failover=run,
    )


def test_history_reads_the_evidence_packs_into_a_table_and_a_trend(moto, tmp_path):
    # A bucket of its own: moto's servers in one process share their state.
    bucket = f"dr-evidence-{uuid.uuid4().hex[:12]}"
    runbook = tmp_path / "llm-inference.yaml"
    runbook.write_text(Path(RUNBOOK).read_text().replace("s3://dr-evidence/drills/", f"s3://{bucket}/drills/"))
    copy = str(runbook)
    env = {**AWS_ENV, "AWS_ENDPOINT_URL": moto.url}
    s3 = aws_client("s3", moto.url)
    missing = drpilot("drill", "history", copy, **env)
    assert missing.returncode == 1
    assert missing.stderr.strip().startswith(f"error: cannot read s3://{bucket}/drills/llm-inference/: ")
    assert f"S3 bucket '{bucket}' does not exist" in missing.stderr and "Traceback" not in missing.stderr

    s3.create_bucket(Bucket=bucket)
    first = datetime(2026, 11, 3, 10, 0, tzinfo=UTC)
    for week, (rto, ready) in enumerate([(600.0, 240.0), (640.0, 250.0), (960.0, 600.0)]):
        started = first + timedelta(weeks=week)
        s3.put_object(Bucket=bucket, Key=f"drills/llm-inference/{started:%Y%m%dT%H%M%SZ}-live-{week}.json",
                      Body=pack(started, rto, run=failover(ready, ready + 60) if week else None).model_dump_json())
    s3.put_object(Bucket=bucket, Key="drills/other-runbook/x.json", Body=b"{}")  # another runbook's: not read
    result = drpilot("drill", "history", copy, **env)  # into a pipe: no terminal width
    assert result.returncode == 0, result.stderr
    assert_whole(result.stdout, "preflight s", "failover s", "soak s", "failback s", "cleanup s", "RTO@1 s", "900 MISSED")
    rows = [line for line in result.stdout.splitlines() if line.strip().startswith("2026-")]
    assert len(rows) == 3
    assert rows[0].split()[:9] == ["2026-11-03", "10:00", "live", "completed", "0.4", "95.0", "600.0", "4500.0", "-"]
    assert rows[2].split()[-2:] == ["900", "MISSED"]
    assert result.stdout.strip().splitlines()[-4:] == [
        # A trend per stage the failovers measured, at speed 1 (the first drill had no cold start).
        "cold start scheduled: 2s, 2s at speed 1 (last 2s; steady around the mean 2s of the 1 before)",
        "cold start ready: 250s, 600s at speed 1 (last 600s; worse than the mean 250s of the 1 before)",
        # After ready the warm-up took its real time (6 s), not divided by the speed.
        "cold start warmed: 256s, 606s at speed 1 (last 606s; worse than the mean 256s of the 1 before)",
        "RTO last 960s vs objective 900s (107% of it); 1 of 3 missed; worse than the mean 620s of the 2 before",
    ]

    s3.put_object(Bucket=bucket, Key="drills/llm-inference/zzz-broken.json", Body=b'{"drill_id": 1}')
    broken = drpilot("drill", "history", copy, **env)
    assert broken.returncode == 1
    assert broken.stderr.strip().startswith(f"error: s3://{bucket}/drills/llm-inference/zzz-broken.json is not a drill evidence pack")


def test_readiness_usage_mistakes_are_one_line():
    result = drpilot("readiness", "schedule", RUNBOOK, "--every", "10s")
    assert (result.returncode, result.stderr.strip()) == (2, "--every 10s: at least 1m (each check reads every region and artifact)")
    result = drpilot("readiness", "schedule", RUNBOOK, "--every", "soon")
    assert (result.returncode, result.stderr.strip()) == (2, "--every: not a duration: 'soon' (use e.g. 90s, 5m, 1h30m)")
    result = drpilot("readiness", "a.yaml", "b.yaml")
    assert result.returncode == 2
    assert result.stderr.strip() == "readiness: expected FILE, `schedule FILE --every 30m`, `last NAME` or `delete NAME`"
    result = drpilot("readiness", RUNBOOK, DRPILOT_TEMPORAL_ADDRESS="127.0.0.1:1")
    assert result.returncode == 1 and result.stderr.startswith("error: cannot reach Temporal at 127.0.0.1:1")


def test_report_states_a_periods_drills_for_an_auditor(moto, tmp_path):
    bucket = f"dr-evidence-{uuid.uuid4().hex[:12]}"
    runbook = tmp_path / "llm-inference.yaml"
    runbook.write_text(Path(RUNBOOK).read_text().replace("s3://dr-evidence/drills/", f"s3://{bucket}/drills/"))
    env = {**AWS_ENV, "AWS_ENDPOINT_URL": moto.url}
    s3 = aws_client("s3", moto.url)
    s3.create_bucket(Bucket=bucket)
    before, good, bad = (datetime(2026, m, 3, 10, 0, tzinfo=UTC) for m in (9, 11, 12))
    passed = pack(good, 600.0).model_copy(update={
        "approvals": ["failover approved by bob@example.com"], "requested_by": "alice@example.com",
        "runbook_digest": "sha256:ab12", "drpilot_version": "0.4.0",
    })
    failover_failed = PhaseRecord(name="failover", started_at=bad, ended_at=bad, outcome="failed", detail="health-gate: us-west-2 <not ready>")
    cleanup = PhaseRecord(name="cleanup", started_at=bad, ended_at=bad, outcome="ok", detail="us-west-2 back to standby")
    failed = pack(bad, None, "failed").model_copy(update={"phases": [failover_failed, cleanup], "reason": "the failover failed"})
    for started, result in ((before, pack(before, 500.0)), (good, passed), (bad, failed)):
        s3.put_object(Bucket=bucket, Key=f"drills/llm-inference/{started:%Y%m%dT%H%M%SZ}-live-x.json", Body=result.model_dump_json())

    md = drpilot("drill", "report", str(runbook), "--since", "2026-11-01", **env)
    assert md.returncode == 0, md.stderr
    assert "- **period**: since 2026-11-01 (2 drill(s))" in md.stdout  # September's is outside the period
    assert "- **outcomes**: 1 completed, 1 failed" in md.stdout and "- **RTO objective**: met in 1 of 1 measured drill(s)" in md.stdout
    good_row, bad_row = [line for line in md.stdout.splitlines() if line.startswith("| 2026-")]
    assert good_row.split(" | ")[2:5] == ["completed", "600s vs objective 900s: met",
                                           "requested by alice@example.com; failover approved by bob@example.com"]
    assert good_row.endswith("| nothing needed | runbook sha256:ab12, drpilot 0.4.0 |")
    assert "failover: failed: health-gate: us-west-2 <not ready>; why: the failover failed" in bad_row
    assert "cleanup: us-west-2 back to standby" in bad_row and "digest not recorded" in bad_row

    page = drpilot("drill", "report", str(runbook), "--since", "2026-11-01", "--format", "html", "-o", str(tmp_path / "r.html"), **env)
    assert page.returncode == 0, page.stderr
    html = (tmp_path / "r.html").read_text()
    assert "us-west-2 &lt;not ready&gt;" in html and "<not ready>" not in html and "<script" not in html
    wrong = drpilot("drill", "report", str(runbook), "--since", "last year", **env)
    assert (wrong.returncode, wrong.stderr.strip()) == (2, "error: --since last year: expected a date like 2026-01-01")

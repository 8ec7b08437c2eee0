"""The console's drills page: the past drills from their evidence packs (moto's S3 over HTTP),
the RTO trend, each pack to download, and the period's drill report; the home page's RTO trend
chart of the same packs."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from drpilot.console.charts import MET, MISSED, rto_trend
from tests.support.aws import aws_client
from tests.support.runbooks import runbook
from tests.support.world import World
from workflows.types import DrillResult, PhaseRecord


def pack(started: datetime, rto: float, status: str = "completed") -> DrillResult:
    failover = PhaseRecord(name="failover", started_at=started, ended_at=started + timedelta(seconds=rto),
                           outcome="ok" if status == "completed" else "failed", detail="<gate> us-west-2")
    return DrillResult(
        drill_id=f"drill:llm-inference-{started:%Y%m%dT%H%M%SZ}", runbook="llm-inference", mode="live", from_region="us-east-1",
        status=status, phases=[failover], rto_seconds=rto, rto_seconds_unscaled=rto, objective_rto_seconds=900,
        rto_met=rto <= 900, started_at=started, ended_at=started + timedelta(hours=1), runbook_digest="sha256:ab12",
    )


async def test_the_drills_page_lists_the_evidence_and_gives_the_packs_and_the_report(serve_console, moto):
    bucket = f"dr-evidence-{uuid.uuid4().hex[:12]}"
    rb = runbook("llm-inference.yaml", spec__drills__evidence=f"s3://{bucket}/drills/")
    s3 = aws_client("s3", moto.url)
    s3.create_bucket(Bucket=bucket)
    first, second = datetime(2026, 10, 6, 10, tzinfo=UTC), datetime(2026, 11, 3, 10, tzinfo=UTC)
    keys = [f"drills/llm-inference/{at:%Y%m%dT%H%M%SZ}-live-{i}.json" for i, at in enumerate((first, second))]
    s3.put_object(Bucket=bucket, Key=keys[0], Body=pack(first, 600.0).model_dump_json())
    s3.put_object(Bucket=bucket, Key=keys[1], Body=pack(second, 960.0, "failed").model_dump_json())
    async with serve_console(World.normal(rb), rb, s3=s3) as served:
        viewer = served.as_("carol@example.com")
        page = await served.http.get("/drills", headers=viewer)
        assert page.status_code == 200, page.text
        assert "RTO last 960s vs objective 900s (107% of it); 1 of 2 missed" in page.text
        assert "<td>failed</td><td>960s of 900s MISSED</td>" in page.text
        assert f'href="/drills/llm-inference/evidence/{keys[1]}"' in page.text
        # The time-skipping server keeps no schedules: the page says so and shows the rest.
        assert "schedules unreadable</span> <span class=\"note\">cannot list schedules: " in page.text

        download = await served.http.get(f"/drills/llm-inference/evidence/{keys[0]}", headers=viewer)
        assert download.status_code == 200 and download.headers["content-disposition"].startswith("attachment;")
        assert download.json()["drill_id"] == "drill:llm-inference-20261006T100000Z"
        elsewhere = await served.http.get("/drills/llm-inference/evidence/drills/other/x.json", headers=viewer)
        assert elsewhere.status_code == 404

        report = await served.http.get("/drills/llm-inference/report?since=2026-11-01&format=html", headers=viewer)
        assert report.status_code == 200 and "since 2026-11-01 (1 drill(s))" in report.text
        assert "&lt;gate&gt; us-west-2" in report.text and "<gate>" not in report.text
        bad = await served.http.get("/drills/llm-inference/report?since=soon", headers=viewer)
        assert (bad.status_code, bad.text) == (400, "since=soon: expected a date like 2026-01-01\n")
        stranger = await served.http.get("/drills/llm-inference/report?since=2026-11-01", headers=served.as_("mallory@example.com"))
        assert stranger.status_code == 404

        # The home page draws the same packs as the runbook's RTO trend, once the board has read them.
        [row] = await served.board("carol@example.com")
        assert [(d["rto"], d["met"]) for d in row["drills"]["drills"]] == [(600.0, True), (960.0, False)]
        home = await served.http.get("/", headers=viewer)
        assert '<svg xmlns="http://www.w3.org/2000/svg" class="rto-trend"' in home.text
        assert f'fill="{MISSED}"><title>2026-11-03 10:00Z failed: RTO 960s of 900s</title></circle>' in home.text
        assert f'fill="{MET}"><title>2026-10-06 10:00Z completed: RTO 600s of 900s</title></circle>' in home.text


def test_the_rto_trend_escapes_what_it_draws():
    drill = {"started_at": "2026-11-03T10:00:00+00:00", "status": "<script>alert(1)</script>", "rto": 100.0,
             "objective": 900.0, "met": True}
    chart = rto_trend({"drills": [drill]})
    assert "<script>" not in chart and "&lt;script&gt;alert(1)&lt;/script&gt;: RTO 100s of 900s" in chart
    assert rto_trend({"error": "cannot read s3://b/<x>"}) == '<br><span class="note">RTO trend unreadable: cannot read s3://b/&lt;x&gt;</span>'
    assert rto_trend(None) == ""

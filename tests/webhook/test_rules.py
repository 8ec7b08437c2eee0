"""Routing rules: Alertmanager's matcher syntax and semantics, errors with their place, the
shipped rules for the example runbooks, and the CLI that checks them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic_core import PydanticCustomError

from drpilot.webhook.rules import RulesError, load_rules, parse_matcher, rules_schema
from tests.support.paths import ROOT

SHIPPED = ROOT / "infra/alertmanager/drpilot-rules.yaml"


@pytest.mark.parametrize(
    "text, labels, expected",
    [
        ('alertname="RegionDown"', {"alertname": "RegionDown"}, True),
        ('alertname="RegionDown"', {"alertname": "RegionDownSoon"}, False),
        ("alertname=RegionDown", {"alertname": "RegionDown"}, True),  # unquoted, as amtool accepts
        ('region!="us-east-1"', {"region": "us-west-2"}, True),
        ('region!="us-east-1"', {"region": "us-east-1"}, False),
        ('region=~"us-.*"', {"region": "us-east-1"}, True),
        ('region=~"east"', {"region": "us-east-1"}, False),  # anchored, as Alertmanager's are
        ('region!~"us-.*"', {"region": "eu-west-1"}, True),
        ('region!~"us-.*"', {"region": "us-east-1"}, False),
        ('team=""', {}, True),  # a missing label has the value ""
        ('team!=""', {}, False),
        ('summary="say \\"hi\\""', {"summary": 'say "hi"'}, True),
        (' severity = "page" ', {"severity": "page"}, True),
    ],
)
def test_matchers_mean_what_alertmanager_means(text, labels, expected):
    assert parse_matcher(text).matches(labels) is expected


@pytest.mark.parametrize("text", ['region=~"("', "region", 'region=="x"', '9region="x"', 'region="unterminated', 'a="b"c"'])
def test_a_malformed_matcher_is_refused(text):
    with pytest.raises(PydanticCustomError):
        parse_matcher(text)


def test_every_problem_is_reported_with_its_line_and_column(tmp_path: Path):
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "apiVersion: drpilot/v1\n"
        "kind: WebhookRules\n"
        "rules:\n"
        "  - name: x\n"
        "    match: ['alertname=~\"(\"', 'foo']\n"
        "    runbook: nope.yaml\n"
        "    regoin_label: region\n"
        "    for: soon\n"
        "    mode: sometimes\n"
    )
    with pytest.raises(RulesError) as caught:
        load_rules(rules)
    lines = [str(p).replace(str(rules), "R") for p in caught.value.problems]
    assert lines == [
        "R:5:13: rules[0].match[0]: invalid regex '(': missing ), unterminated subpattern at position 0",
        'R:5:31: rules[0].match[1]: expected a matcher as Alertmanager writes it: name="value", name!="value", '
        'name=~"regex" or name!~"regex", got "foo"',
        "R:6:14: rules[0].runbook: runbook nope.yaml: 1:1: cannot read the file: No such file or directory",
        'R:7:5: rules[0].regoin_label: unknown field "regoin_label" (did you mean "region_label"?)',
        'R:8:10: rules[0].for: expected a duration such as 90s, 5m or 1h30m, got "soon"',
        "R:9:11: rules[0].mode: expected one of 'auto' or 'approval', got \"sometimes\"",
    ]


def test_a_runbook_with_problems_is_named_at_the_rule_that_uses_it(tmp_path: Path):
    (tmp_path / "rb.yaml").write_text("apiVersion: drpilot/v1\nkind: Runbook\n")
    rules = tmp_path / "rules.yaml"
    rules.write_text("apiVersion: drpilot/v1\nkind: WebhookRules\nrules:\n  - {name: x, match: ['a=\"b\"'], runbook: rb.yaml}\n")
    with pytest.raises(RulesError) as caught:
        load_rules(rules)
    [problem] = caught.value.problems
    assert (problem.line, problem.path) == (4, "rules[0].runbook")
    assert problem.message.startswith("runbook rb.yaml: 1:1: metadata: required field is missing (and 1 more;")


def test_the_shipped_rules_route_the_example_runbooks_alerts():
    routing = load_rules(SHIPPED)
    assert {r.runbook.name for r in routing.routes} == {"llm-inference", "llm-inference-gcp"}

    def routed(**labels):
        route = routing.route({"drpilot_action": "failover", "region": "us-east-1", **labels})
        return route and route.rule.name

    assert routed(alertname="RegionDown", drpilot_runbook="llm-inference") == "llm-inference-region-down"
    assert routed(alertname="InferenceServiceDown", drpilot_runbook="llm-inference") == "llm-inference-service-down"
    assert routed(alertname="InferenceServiceDown", drpilot_runbook="llm-inference-gcp") == "llm-inference-gcp-service-down"
    assert routed(alertname="DiskFull", drpilot_runbook="llm-inference") is None
    for route in routing.routes:
        assert route.rule.region_label == "region"


def test_the_shipped_rules_match_what_prometheus_and_alertmanager_send_drpilot():
    """Every alert rule that Prometheus labels for a drpilot runbook (infra/prometheus) has a
    rule here, and the route sending them (alertmanager.yml) posts to the webhook's path."""
    import yaml

    routing = load_rules(SHIPPED)
    groups = yaml.safe_load((ROOT / "infra/prometheus/rules.yaml").read_text())["groups"]
    for rule in (r for g in groups for r in g["rules"] if "drpilot_runbook" in r.get("labels", {})):
        labels = {"alertname": rule["alert"], "region": "us-east-1", **rule["labels"]}
        assert routing.route(labels) is not None, rule["alert"]
    config = yaml.safe_load((ROOT / "infra/alertmanager/alertmanager.yml").read_text())
    [drpilot] = [r for r in config["receivers"] if r["name"] == "drpilot"]
    assert drpilot["webhook_configs"][0]["url"].endswith("/v1/alertmanager")
    assert drpilot["webhook_configs"][0]["send_resolved"] is True


def test_the_schema_describes_the_rules_file():
    schema = rules_schema()
    rule = schema["$defs"]["Rule"]
    assert {"match", "runbook", "region_label", "action", "mode", "for"} <= set(rule["properties"])
    assert rule["properties"]["mode"]["enum"] == ["auto", "approval"]


def drpilot(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "drpilot", *args], capture_output=True, text=True, cwd=ROOT)


def test_cli_validates_rules_files_and_prints_the_schema(tmp_path: Path):
    ok = drpilot("webhook", "rules", "validate", str(SHIPPED))
    assert ok.returncode == 0 and ok.stdout.strip() == f"{SHIPPED}: ok", ok.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: drpilot/v1\nkind: WebhookRules\nrulez: []\n")
    failed = drpilot("webhook", "rules", "validate", str(bad))
    assert failed.returncode == 1
    assert f'{bad}:3:1: rulez: unknown field "rulez" (did you mean "rules"?)' in failed.stderr
    assert "Traceback" not in failed.stderr
    assert json.loads(drpilot("webhook", "rules", "schema").stdout)["title"] == "drpilot webhook rules (drpilot/v1)"


def test_serve_without_a_token_refuses_to_start():
    served = subprocess.run(
        [sys.executable, "-m", "drpilot", "webhook", "serve", "--rules", str(SHIPPED)],
        capture_output=True, text=True, cwd=ROOT, env={"PATH": "/usr/bin:/bin"}, timeout=60,
    )
    assert served.returncode == 2
    assert "needs a bearer token: set DRPILOT_WEBHOOK_TOKEN or pass --token-file" in served.stderr


def test_serve_answers_on_loopback_and_says_503_while_temporal_is_away(tmp_path: Path):
    """The real command: uvicorn on 127.0.0.1, the token from a file, Temporal not there, the
    AWS profile named not there either (a warning at start, not a crash)."""
    import os
    import signal
    import socket
    import time

    import httpx

    from tests.support.webhook import alert, notification

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        nowhere = s.getsockname()[1]  # closed again: nothing answers there
    token = tmp_path / "token"
    token.write_text("file-token\n")
    # An AWS profile that does not exist: the DNS client built at start says so and serves on.
    env = {**os.environ, "DRPILOT_TEMPORAL_ADDRESS": f"127.0.0.1:{nowhere}", "AWS_PROFILE": "drpilot-no-such-profile"}
    env.pop("DRPILOT_WEBHOOK_TOKEN", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "drpilot", "webhook", "serve", "--rules", str(SHIPPED), "--host", "127.0.0.1",
         "--port", str(port), "--token-file", str(token)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, process.communicate()
            try:
                if httpx.get(f"{url}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "webhook did not start"
                time.sleep(0.1)
        body = notification(alert("us-east-1"))
        assert httpx.post(f"{url}/v1/alertmanager", json=body).status_code == 401
        away = httpx.post(f"{url}/v1/alertmanager", json=body, headers={"Authorization": "Bearer file-token"}, timeout=30)
        assert away.status_code == 503
        assert f"cannot reach Temporal at 127.0.0.1:{nowhere}" in away.json()["error"]
        assert httpx.get(f"{url}/readyz", timeout=30).status_code == 503
        assert 'drpilot_webhook_requests_total{code="503"} 1.0' in httpx.get(f"{url}/metrics").text
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    # uvicorn shuts down gracefully, then re-raises the signal it caught.
    assert process.returncode in (0, -signal.SIGTERM), stderr
    assert "file-token" not in stderr
    assert "cannot build a DNS client" in stderr and "drpilot-no-such-profile" in stderr, stderr
    assert "Traceback" not in stderr, stderr

"""The runbook loader's user-facing text, tested to the letter: every error class names the
file, line, column, field path, what was expected and what was found."""

from __future__ import annotations

import re
import textwrap
from datetime import timedelta

import pytest

from drpilot.domain.loader import RunbookError, load_runbook, parse_runbook
from drpilot.domain.runbook import Role

VALID = textwrap.dedent(
    """\
    apiVersion: drpilot/v1
    kind: Runbook
    metadata:
      name: llm
    spec:
      objectives: {rto: 5m, rpo: 15m}
      regions:
        east:
          role: primary
          endpoint: https://east.example.com
          kube: {context: east}
        west:
          role: standby
          endpoint: https://west.example.com
          kube: {context: west}
      dns:
        provider: route53
        zone: example.com.
        records:
          - name: inference.example.com.
            ttl: 60
            targets: {east: lb-east.example.com., west: lb-west.example.com.}
      traffic_shift:
        steps: [10, 25, 50, 75, 100]
        bake: 15m
    """
)


def problems(text: str) -> list[str]:
    with pytest.raises(RunbookError) as caught:
        parse_runbook(text, "rb.yaml")
    return [str(p) for p in caught.value.problems]


def test_valid_runbook_loads_with_defaults():
    rb = parse_runbook(VALID, "rb.yaml")
    assert rb.name == "llm"
    assert rb.primary == "east"
    assert rb.spec.regions["west"].role is Role.standby
    assert rb.spec.objectives.rto == timedelta(minutes=5)
    assert rb.spec.health.http[0].path == "/v2/health/ready"
    assert rb.spec.approvals.on_timeout == "abort"
    assert rb.normal_weights() == {"east": 100, "west": 0}


def test_wrong_type_names_file_line_column_path_expected_and_found():
    assert problems(VALID.replace("ttl: 60", "ttl: sixty")) == [
        'rb.yaml:21:14: spec.dns.records[0].ttl: expected a positive integer, got "sixty"'
    ]


def test_unknown_key_suggests_the_near_miss():
    assert problems(VALID.replace("  records:", "  recods:")) == [
        "rb.yaml:17:5: spec.dns.records: required field is missing",
        'rb.yaml:19:5: spec.dns.recods: unknown field "recods" (did you mean "records"?)',
    ]


def test_unknown_key_without_near_miss_lists_known_fields():
    assert problems(VALID.replace("  name: llm", "  name: llm\n  colour: blue")) == [
        'rb.yaml:5:3: metadata.colour: unknown field "colour" (known fields: name, owner, description, labels)'
    ]


def test_missing_field_points_at_its_parent():
    text = VALID.replace("      kube: {context: west}\n", "")
    assert problems(text) == ["rb.yaml:13:7: spec.regions.west.kube: required field is missing"]


def test_enum_value_lists_the_choices():
    assert problems(VALID.replace("role: standby", "role: standbi")) == [
        "rb.yaml:13:13: spec.regions.west.role: expected one of 'primary', 'active' or 'standby', got \"standbi\""
    ]


def test_duplicate_key_is_an_error_with_both_lines():
    text = VALID.replace("kind: Runbook\n", "kind: Runbook\nkind: Runbook\n")
    assert problems(text) == ["rb.yaml:3:1: kind: duplicate key 'kind' (first given at line 2)"]


def test_yaml_syntax_error_has_position():
    text = VALID.replace("objectives: {rto: 5m, rpo: 15m}", "objectives: {rto: 5m, rpo: 15m")
    assert problems(text) == [
        "rb.yaml:7:10: YAML syntax error: expected ',' or '}', but got ':'"
    ]


def test_unquoted_date_version_asks_for_quotes():
    text = VALID + (
        "  models:\n"
        "    - name: llm-7b\n"
        "      version: 2024-01-15\n"
        "      artifacts: {east: s3://models-east/llm/, west: s3://models-west/llm/}\n"
    )
    assert problems(text) == [
        'rb.yaml:28:16: spec.models[0].version: expected a string (quote it in YAML), got "2024-01-15"'
    ]


def test_duration_without_unit_is_refused():
    assert problems(VALID.replace("bake: 15m", "bake: 900")) == [
        "rb.yaml:25:11: spec.traffic_shift.bake: expected a duration with a unit such as 90s, 5m or 1h30m, got 900"
    ]


def test_several_errors_are_all_reported_in_file_order():
    text = VALID.replace("ttl: 60", "ttl: -1").replace("role: standby", "role: 7").replace("rto: 5m", "rto: soon")
    assert problems(text) == [
        'rb.yaml:6:21: spec.objectives.rto: expected a duration such as 90s, 5m or 1h30m, got "soon"',
        "rb.yaml:13:13: spec.regions.west.role: expected one of 'primary', 'active' or 'standby', got 7",
        "rb.yaml:21:14: spec.dns.records[0].ttl: expected a positive integer, got -1",
    ]


def test_cross_field_rules_each_have_their_own_place():
    text = (
        VALID.replace("role: standby", "role: primary")
        .replace("west: lb-west.example.com.", "north: lb-north.example.com.")
        .replace("steps: [10, 25, 50, 75, 100]", "steps: [10, 50, 25, 75]")
        .replace("bake: 15m", "bake: 30s")
    )
    assert problems(text) == [
        "rb.yaml:7:3: spec.regions: expected exactly one region with role primary, found east, west",
        "rb.yaml:22:9: spec.dns.records[0].targets: no target for region 'west'; every region needs one to fail over to it",
        "rb.yaml:22:47: spec.dns.records[0].targets.north: unknown region 'north'; regions are east, west",
        "rb.yaml:24:5: spec.traffic_shift.steps: expected the last step to be 100, got 75",
        "rb.yaml:24:21: spec.traffic_shift.steps[2]: expected steps to increase strictly, got 25 after 50",
        "rb.yaml:25:5: spec.traffic_shift.bake: bake (30s) is shorter than the DNS TTL (60s): a step would be judged before resolvers saw it",
    ]


def test_a_guardrail_the_regions_cannot_meet_says_how_to_fix_it():
    text = VALID + "  guardrails:\n    min_healthy_targets: 2\n"
    assert problems(text) == [
        "rb.yaml:27:5: spec.guardrails.min_healthy_targets: 2 healthy targets required but only 1 "
        "region(s) serve normally (east); lower it or give more regions role active"
    ]


def test_clouddns_needs_a_project():
    text = VALID.replace("provider: route53", "provider: clouddns")
    assert problems(text) == ["rb.yaml:17:5: spec.dns.project: the clouddns provider needs the Google Cloud project"]


def test_not_a_mapping_and_empty_documents():
    assert problems("- just\n- a list\n") == ["rb.yaml:1:1: expected a mapping (apiVersion, kind, metadata, spec), got a list"]
    assert problems("") == ["rb.yaml:1:1: expected a mapping (apiVersion, kind, metadata, spec), got an empty document"]


def test_unreadable_file(tmp_path):
    with pytest.raises(RunbookError) as caught:
        load_runbook(tmp_path / "absent.yaml")
    assert str(caught.value) == f"{tmp_path / 'absent.yaml'}:1:1: cannot read the file: No such file or directory"


def test_example_runbooks_are_valid(runbook_paths):
    assert len(runbook_paths) >= 2
    providers = {load_runbook(p).spec.dns.provider.value for p in runbook_paths}
    assert providers == {"route53", "clouddns"}
    assert max(len(load_runbook(p).spec.regions) for p in runbook_paths) >= 3


def test_runbook_round_trips_through_json():
    # Workflows receive the runbook through the JSON payload converter: nothing may change.
    from drpilot.domain.runbook import Runbook

    rb = parse_runbook(VALID, "rb.yaml")
    assert Runbook.model_validate_json(rb.model_dump_json()) == rb
    assert rb.model_dump(mode="json")["spec"]["traffic_shift"]["bake"] == "15m"


def test_control_characters_are_a_positioned_error():
    assert problems(VALID.replace("name: llm", "name: l\x07lm")) == [
        "rb.yaml:4:10: YAML cannot contain the control character #x0007; remove it"
    ]


def test_drills_with_blocking_alerts_need_an_alertmanager():
    text = VALID + "  guardrails:\n    blocking_alerts: [RegionDown]\n  drills:\n    evidence: s3://dr-evidence/drills/\n"
    assert problems(text) == [
        "rb.yaml:28:3: spec.drills: guardrails.blocking_alerts are declared: add alertmanager (its URL) so a "
        "drill can check them before it starts"
    ]


def test_drills_with_blocking_queries_need_a_prometheus():
    text = VALID + (
        "  guardrails:\n    blocking_queries: ['up{job=\"inference\"} == 0']\n"
        "  drills:\n    evidence: s3://dr-evidence/drills/\n"
    )
    assert problems(text) == [
        "rb.yaml:28:3: spec.drills: guardrails.blocking_queries are declared: add prometheus (its URL) so a "
        "drill can evaluate them before it starts"
    ]
    rb = parse_runbook(text + "    prometheus: http://prometheus.monitoring:9090\n", "rb.yaml")
    assert rb.spec.drills is not None and rb.spec.drills.prometheus == "http://prometheus.monitoring:9090"


def test_drill_evidence_must_be_an_s3_or_gs_prefix():
    text = VALID + "  drills:\n    evidence: /var/evidence\n"
    assert problems(text) == [
        'rb.yaml:27:15: spec.drills.evidence: expected an s3://bucket/prefix/ or gs://bucket/prefix/ URI, got "/var/evidence"'
    ]
    assert parse_runbook(VALID + "  drills:\n    evidence: gs://dr-evidence/drills/\n", "rb.yaml").spec.drills.evidence == (
        "gs://dr-evidence/drills/"
    )


def test_each_region_names_its_own_store_and_a_bad_gs_uri_is_one_positioned_problem():
    def with_artifacts(west: str) -> str:
        return VALID + (
            "  models:\n"
            "    - name: llm-7b\n"
            "      version: '2024-01-15'\n"
            f"      artifacts: {{east: s3://models-east/llm/, west: {west}}}\n"
        )

    rb = parse_runbook(with_artifacts("gs://models-west/llm/"), "rb.yaml")
    assert rb.spec.models[0].artifacts == {"east": "s3://models-east/llm/", "west": "gs://models-west/llm/"}
    assert problems(with_artifacts("gs://Models_West/llm/")) == [
        'rb.yaml:29:54: spec.models[0].artifacts.west: expected an s3://bucket/prefix/ or gs://bucket/prefix/ URI, '
        'got "gs://Models_West/llm/"'
    ]


# Inputs bench/bad_input.py (issue 13, 3.7) found crashing the loader with a traceback
# instead of a problem; each is now a positioned, one-line problem.


def test_nesting_deeper_than_python_recurses_is_a_positioned_error():
    # PyYAML composes recursively: 3000 levels used to raise RecursionError.
    # The column is where PyYAML ran out of stack, which depends on the caller's depth.
    deep = VALID.replace("  objectives: {rto: 5m, rpo: 15m}", "  objectives: " + "[" * 3000 + "]" * 3000)
    (problem,) = problems(deep)
    assert re.fullmatch(
        r"rb\.yaml:6:\d+: nested more than 64 levels deep; no field needs that many: remove the extra nesting", problem
    ), problem


def test_nesting_deeper_than_the_limit_names_the_field():
    deep = VALID.replace("  objectives: {rto: 5m, rpo: 15m}", "  objectives: " + "[" * 100 + "]" * 100)
    assert problems(deep) == [
        "rb.yaml:6:77: spec.objectives[0][0]...[0][0]: nested more than 64 levels deep; no field needs that many: "
        "remove the extra nesting"
    ]


def test_an_integer_python_cannot_read_is_a_positioned_error():
    # int() refuses more than 4300 digits (ValueError).
    assert problems(VALID.replace("ttl: 60", "ttl: " + "9" * 5000)) == [
        "rb.yaml:21:14: spec.dns.records[0].ttl: expected a number Python can read (at most 4300 digits), got one of 5000 characters"
    ]


def test_a_number_too_large_for_a_float_is_a_positioned_error():
    # float() of it raised OverflowError, and printing it (json.dumps) ValueError.
    text = VALID.replace("kube: {context: east}", "kube: {context: east}\n      capacity: 0x" + "f" * 5000)
    assert problems(text) == [
        "rb.yaml:12:17: spec.regions.east.capacity: expected a finite number greater than 0 (at most 1.8e308), "
        "got a number of about 6020 digits"
    ]
    assert problems(VALID.replace("kube: {context: east}", "kube: {context: east}\n      capacity: .inf")) == [
        "rb.yaml:12:17: spec.regions.east.capacity: expected a finite number greater than 0 (at most 1.8e308), got Infinity"
    ]


def test_an_impossible_date_is_a_positioned_error():
    # YAML reads 2024-13-45 as a date; datetime.date raised ValueError.
    assert problems(VALID.replace("rto: 5m", "rto: 2024-13-45")) == [
        'rb.yaml:6:21: spec.objectives.rto: invalid value "2024-13-45" (month must be in 1..12); quote it if it is text'
    ]


def test_a_merge_key_of_a_scalar_is_a_positioned_error():
    # flatten_mapping raised ConstructorError outside the parser's error handling.
    assert problems(VALID.replace("  objectives: {rto: 5m, rpo: 15m}", "  objectives: {<<: 1, rto: 5m}")) == [
        "rb.yaml:6:20: spec.objectives: invalid merge key (<<): expected a mapping or list of mappings for merging, "
        "but found scalar; merge a mapping or a list of mappings (<<: *anchor)"
    ]


def test_a_duration_beyond_a_timedelta_is_a_positioned_error():
    # timedelta(seconds=...) raised OverflowError.
    assert problems(VALID.replace("bake: 15m", "bake: 99999999999999999999h")) == [
        "rb.yaml:25:11: spec.traffic_shift.bake: expected a duration of at most 999999999 days such as 90s, 5m or 1h30m, "
        'got "99999999999999999999h"'
    ]


def test_an_alias_bomb_is_refused_at_once():
    # Nine aliases per level, seven levels: 4.8 million values, which took seconds (and more
    # levels minutes and gigabytes) to expand.
    bomb = "".join(f"b{n}: &b{n} [{', '.join([f'*b{n - 1}' if n else '1'] * 9)}]\n" for n in range(7))
    assert problems(bomb + VALID) == [
        "rb.yaml:1:13: b5[0][3][3][7][2][1]: the document holds more than 100000 values (YAML aliases, *name, "
        "repeat what &name anchors); write the values out, or fewer"
    ]


def test_a_key_with_a_line_break_stays_on_one_line():
    text = VALID.replace("  name: llm\n", '  name: llm\n  "own\\ner\\x85": x\n')
    assert problems(text) == [
        'rb.yaml:5:3: metadata.own\\ner\\x85: unknown field "own\\ner\\x85" (did you mean \"owner\"?)'
    ]


ARN = "arn:aws:route53-recovery-control::111122223333:controlpanel/abc"
SWITCHED = VALID.replace("    records:", f"""\
    switch: routing_controls
    routing_controls:
      cluster_endpoints: [{{url: "https://host-a.example.com/v1", region: us-west-2}}]
      controls:
        east: {{arn: {ARN}/routingcontrol/e1, health_check: hc-east}}
        west: {{arn: {ARN}/routingcontrol/w1, health_check: hc-west}}
    records:""")


def test_routing_controls_load_and_their_mistakes_are_positioned():
    assert parse_runbook(VALID, "rb.yaml").spec.dns.switch == "weights"  # the default
    rb = parse_runbook(SWITCHED, "rb.yaml")
    assert rb.spec.dns.routing_controls.controls["west"].health_check == "hc-west"
    assert problems(SWITCHED.replace("        west: {", "        #west: {")) == [
        "rb.yaml:22:7: spec.dns.routing_controls.controls: no routing control for region 'west'; "
        "every region needs one to fail over to it"
    ]
    assert problems(SWITCHED.replace("routingcontrol/w1", "routingcontrol")) == [
        "rb.yaml:24:21: spec.dns.routing_controls.controls.west.arn: expected a Route 53 ARC ARN "
        '(arn:aws:route53-recovery-control::ACCOUNT:controlpanel/ID[/routingcontrol/ID]), '
        'got "arn:aws:route53-recovery-control::111122223333:controlpa...'
    ]
    assert problems(VALID.replace("    records:", "    switch: routing_controls\n    records:")) == [
        "rb.yaml:17:5: spec.dns.routing_controls: switch: routing_controls needs routing_controls "
        "(cluster_endpoints and a control per region)"
    ]


def test_warmup_ready_when_loads_and_its_mistakes_are_positioned():
    warm = VALID + textwrap.indent(
        textwrap.dedent(
            """\
            warmup:
              - path: /v2/models/llm/generate_stream
                timeout: 5s
                ready_when: {p95_time_to_first_byte: 800ms, window: 20}
            """
        ),
        "  ",
    )
    ready = parse_runbook(warm, "rb.yaml").spec.warmup[0].ready_when
    assert ready is not None
    assert (ready.p95_time_to_first_byte, ready.window, ready.timeout) == (
        timedelta(milliseconds=800), 20, timedelta(minutes=10)
    )
    assert problems(warm.replace("800ms, window: 20", "5s, window: 20, timeout: 5s")) == [
        "rb.yaml:29:20: spec.warmup[0].ready_when.p95_time_to_first_byte: 5s is not below the per-request "
        "timeout (5s): every answered request would count as fast; lower it or raise warmup timeout",
        "rb.yaml:29:60: spec.warmup[0].ready_when.timeout: 5s leaves no time to judge: make it longer than "
        "the per-request timeout (5s), e.g. 10m",
    ]
    assert problems(warm.replace("window: 20", "window: 0")) == [
        "rb.yaml:29:59: spec.warmup[0].ready_when.window: expected a positive integer, got 0"
    ]

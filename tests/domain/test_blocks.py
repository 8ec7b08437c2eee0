"""spec.blocks (drpilot/domain/blocks.py): every mistake a positioned one-line error, and a
template file read relative to the runbook file into the runbook that travels into a run."""

from __future__ import annotations

import textwrap

import pytest

from drpilot.domain.blocks import stage_in, substitute
from drpilot.domain.loader import RunbookError, load_runbook, parse_runbook
from drpilot.domain.runbook import Runbook
from tests.domain.test_runbook_loader import VALID


def with_blocks(blocks: str) -> str:
    return VALID + "  blocks:\n" + textwrap.indent(textwrap.dedent(blocks), "    ")


def problems(text: str, tmp_path=None) -> list[str]:
    with pytest.raises(RunbookError) as caught:
        if tmp_path is None:
            parse_runbook(text, "rb.yaml")
        else:
            (tmp_path / "rb.yaml").write_text(text)
            load_runbook(tmp_path / "rb.yaml")
    return [str(p).replace(f"{tmp_path}/", "") if tmp_path else str(p) for p in caught.value.problems]


def test_every_kind_loads_and_a_template_travels_inside_the_runbook(tmp_path):
    (tmp_path / "jobs").mkdir()
    (tmp_path / "jobs" / "drain.yaml").write_text("apiVersion: batch/v1\nkind: Job\nspec: {template: {}}\n")
    text = with_blocks("""\
        - {name: registry-db, kind: aurora_global, at: prepare, global_cluster: mlflow,
           members: {east: "arn:aws:rds:us-east-1:1:cluster:e", west: "arn:aws:rds:us-west-2:1:cluster:w"}, max_lag: 30s}
        - name: flags
          kind: http
          at: after_switch
          request: {url: "https://flags.example.com/dr", body: {serving: "{target}"}, headers_from_env: {Authorization: FLAGS_TOKEN}}
          undo: {url: "https://flags.example.com/dr", body: {serving: "{source}"}}
        - {name: drain, kind: kubernetes_job, at: after_switch, region: "{source}", namespace: ml, template: jobs/drain.yaml, timeout: 5m}
        - {name: stop-writers, kind: scale, at: deactivate, region: "{source}", workloads: [{namespace: ingest, deployment: writer, replicas: 0}]}
        - {name: dba-confirms, kind: approval, at: before_switch, message: confirm}
    """)
    (tmp_path / "rb.yaml").write_text(text)
    rb = load_runbook(tmp_path / "rb.yaml")
    drain = rb.spec.blocks[2]
    assert drain.job == {"apiVersion": "batch/v1", "kind": "Job", "spec": {"template": {}}}
    # As a run's input: validated again without the file's directory, the manifest kept.
    again = Runbook.model_validate(rb.model_dump(mode="json"))
    assert again.spec.blocks[2].job == drain.job
    assert [b.stage("failback") for b in rb.spec.blocks] == ["prepare", "after_shift", "after_shift", "deactivate", "before_shift"]
    assert stage_in("before_shift", "failover") == "before_switch"


def test_bad_block_fields_are_each_a_positioned_error(tmp_path):
    text = with_blocks("""\
        - {name: a, kind: database, at: prepare}
        - {name: d, kind: kubernetes_job, at: prepare, namespace: ml, template: jobs/missing.yaml}
        - {name: e, kind: http, at: prepare, request: {url: "ftp://flags.example.com/dr"}}
        - {name: f, kind: approval, at: during, message: hi}
    """)
    assert problems(text, tmp_path) == PROBLEMS_OF_FIELDS


def test_blocks_that_break_a_rule_are_each_a_positioned_error():
    text = with_blocks("""\
        - {name: a, kind: approval, at: prepare}
        - {name: b, kind: aurora_global, at: after_switch, global_cluster: g, members: {east: "arn:e"}}
        - {name: c, kind: scale, at: deactivate, region: "{elsewhere}", workloads: [{namespace: a, deployment: b, replicas: 0}]}
        - {name: a, kind: approval, at: prepare, namespace: ml}
        - {name: g, kind: kubernetes_job, at: prepare, namespace: ml}
    """)
    assert problems(text) == PROBLEMS_OF_RULES


def test_substitution_replaces_only_the_two_placeholders():
    body = {"serving": "{target}", "from": "{source}", "json": "{\"a\": 1}", "n": 1}
    assert substitute(body, "us-east-1", "us-west-2") == {
        "serving": "us-west-2", "from": "us-east-1", "json": "{\"a\": 1}", "n": 1,
    }


PROBLEMS_OF_FIELDS = [
    "rb.yaml:27:23: spec.blocks[0].kind: expected one of 'aurora_global', 'http', 'kubernetes_job', 'scale' or "
    "'approval', got \"database\"",
    "rb.yaml:28:77: spec.blocks[1].template: template file jobs/missing.yaml not found (a path relative to the runbook file)",
    "rb.yaml:29:57: spec.blocks[2].request.url: expected an http(s):// URL, got \"ftp://flags.example.com/dr\"",
    "rb.yaml:30:37: spec.blocks[3].at: expected one of 'prepare', 'before_switch', 'after_switch', 'before_shift', "
    "'after_shift' or 'deactivate', got \"during\"",
]
PROBLEMS_OF_RULES = [
    "rb.yaml:28:38: spec.blocks[1].at: kind aurora_global cannot run at after_switch: the writer moves before the "
    "traffic does (use before_shift, before_switch, prepare)",
    "rb.yaml:28:75: spec.blocks[1].members: no member cluster for region 'west': the runbook fails over (or back) to "
    "it, and the writer follows the traffic",
    "rb.yaml:29:46: spec.blocks[2].region: expected a runbook region (east, west), {source} or {target}, got '{elsewhere}'",
    "rb.yaml:30:8: spec.blocks[3].name: block 'a' is already the name of spec.blocks[0]",
    "rb.yaml:30:46: spec.blocks[3].namespace: namespace is not used by kind approval (it uses message)",
    "rb.yaml:31:7: spec.blocks[4]: kind kubernetes_job needs template (a Job manifest file) or job (inline)",
]


def test_the_example_has_a_block_of_every_kind_and_a_plain_on_key_is_a_field(runbook_paths):
    rb = load_runbook(next(p for p in runbook_paths if p.name == "llm-platform.yaml"))
    assert [b.kind for b in rb.spec.blocks] == ["aurora_global", "approval", "http", "kubernetes_job", "scale"]
    assert rb.spec.blocks[1].on == ["failover"]  # `on:` unquoted: YAML 1.1 would read it as true
    assert rb.spec.blocks[3].job is not None and rb.spec.blocks[3].job["kind"] == "Job"
    assert rb.spec.blocks[2].describe("us-east-1", "us-west-2") == (
        "POST https://flags.example.com/api/dr (expects 200); undo POST https://flags.example.com/api/dr"
    )

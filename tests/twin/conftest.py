"""Sandbox fixtures: the twin in-process (fast, for integration tests) and `drpilot sandbox up`
as a real process (for end-to-end tests).

    def test_x(route53_twin):            # in-process Twin of runbooks/llm-inference.yaml
        os.environ is untouched; use route53_twin.env() or its clients' endpoints

    def test_y(sandbox_process):         # factory: the whole sandbox as a child process
        sandbox = sandbox_process(RUNBOOKS / "llm-inference.yaml", "--speed", "10")
        env = sandbox.env()              # DIR/env parsed into a dict
        sandbox.cli("fault", "set", "region_down=us-east-1")
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from drpilot_twin.twin import Twin

from tests.support.paths import CLOUDDNS_RUNBOOK, ROUTE53_RUNBOOK
from tests.support.twin import EXAMPLES, WebhookStandIn, start_twin


@pytest.fixture(scope="module", params=EXAMPLES, ids=lambda p: p.stem)
def example_twin(request, tmp_path_factory) -> Iterator[Twin]:
    """An in-process twin of each example runbook (module scope: tests share it; clear the
    faults you set, or use `twin_factory` for a private one)."""
    twin = start_twin(request.param, tmp_path_factory.mktemp(f"twin-{request.param.stem}"))
    yield twin
    twin.stop()


@pytest.fixture(scope="module")
def route53_twin(tmp_path_factory) -> Iterator[Twin]:
    twin = start_twin(ROUTE53_RUNBOOK, tmp_path_factory.mktemp("twin-route53"))
    yield twin
    twin.stop()


@pytest.fixture(scope="module")
def clouddns_twin(tmp_path_factory) -> Iterator[Twin]:
    twin = start_twin(CLOUDDNS_RUNBOOK, tmp_path_factory.mktemp("twin-clouddns"))
    yield twin
    twin.stop()


@pytest.fixture
def webhook_stand_in() -> Iterator[WebhookStandIn]:
    hook = WebhookStandIn()
    yield hook
    hook.close()

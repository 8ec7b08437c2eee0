"""The worker makes sure drpilot's search attributes exist before it runs anything: every
run sets them as it ends, and in a namespace without them that last task would fail for good."""

from __future__ import annotations

import sysconfig
from pathlib import Path

from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest
from temporalio.testing import WorkflowEnvironment

from drpilot.frontdoor.logs import get_logger
from drpilot.frontdoor.worker import check_search_attributes
from workflows.types import SEARCH_ATTRIBUTES


async def test_a_bare_dev_server_gets_drpilots_search_attributes_registered():
    server = Path(sysconfig.get_path("scripts")) / "temporal"
    env = await WorkflowEnvironment.start_local(dev_server_existing_path=str(server), ip="127.0.0.1", ui=False)
    try:
        client = env.client
        request = ListSearchAttributesRequest(namespace=client.namespace)
        before = (await client.operator_service.list_search_attributes(request)).custom_attributes
        assert not {k.name for k in SEARCH_ATTRIBUTES} & set(before)
        await check_search_attributes(client, client.namespace, get_logger())
        after = (await client.operator_service.list_search_attributes(request)).custom_attributes
        assert {k.name for k in SEARCH_ATTRIBUTES} <= set(after)
        await check_search_attributes(client, client.namespace, get_logger())  # twice: one effect
    finally:
        await env.shutdown()

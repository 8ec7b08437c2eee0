"""`drpilot failback --wait` is what an on-call script checks: its exit status must say
whether traffic is home. The real CLI process against a real dev server, with the
workflow served by a worker on the simulated world (tests/support/world.py)."""

from __future__ import annotations

import asyncio
import json
import os
import sys

from tests.support.paths import ROOT, RUNBOOKS
from tests.support.world import after_failover


async def drpilot(env, *args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "drpilot", *args, cwd=ROOT, env=env,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=120)
    return process.returncode, out.decode(), err.decode()


async def test_wait_exits_1_when_a_failback_rolls_back(dev_harness, dev_env, route53_runbook):
    world = after_failover(route53_runbook, "us-east-1", {"us-west-2": 100})
    world.degrade_at["us-east-1"] = 50
    h = dev_harness(world)
    env = {
        **os.environ,
        "DRPILOT_TEMPORAL_ADDRESS": dev_env.client.service_client.config.target_host,
        "DRPILOT_TASK_QUEUE": h.task_queue,
        "DRPILOT_SANDBOX": "1",  # a rehearsal against a simulated world: --speed 1000 is allowed
    }
    async with h.worker():
        code, out, err = await drpilot(
            env, "failback", str(RUNBOOKS / "llm-inference.yaml"), "--to", "us-east-1",
            "--yes", "--wait", "--json", "--speed", "1000",
        )
    assert code == 1, err
    result = json.loads(out)
    assert result["status"] == "rolled_back"
    assert result["final_state"]["dns"] == {"us-east-1": 0, "us-west-2": 100} == world.dns

"""A run's blocks (spec.blocks, drpilot/domain/blocks.py): their preflight reads, their steps
at the procedure's stages, and the undo of those that completed.

Each block runs as a phase of the timeline named `block:NAME`, so the result, live progress,
status and the report show it as they show every step. The guarantees (README, "Invariants"):

- A block failing at prepare, before_switch or before_shift stops the run before DNS moves:
  the failure is the run's, compensation leaves DNS as it was, and each completed block's
  undo runs, newest first (`undo`).
- After the traffic moved, a failed block fails the run loudly and leaves traffic where it
  is (its data tier, flags, Jobs too); with on_failure: rollback the run's last good state
  becomes the one before the run, so compensation returns traffic there, to the regions
  that pass a health check now (never to one failing).
- An abort (or a Temporal cancellation) during a block's activity lets it settle first, as
  a DNS change does: a switchover or a request cut half-way would leave the world unknown.
  The run then stops there and compensates. An approval block is a wait, not a change: an
  abort ends it at once.
- The data tier's writer follows the traffic (workflows/data_blocks.py): an aurora_global
  block may only run before the traffic moves, and its undo moves the writer back.
- A block whose region was unreachable in preflight (the region left, dark) is skipped with
  a note: it cannot be done, and waiting for it would hold the recovery.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.exceptions import ActivityError, is_cancelled_exception

with workflow.unsafe.imports_passed_through():
    from activities import contracts as c
    from drpilot.domain.blocks import BEFORE_TRAFFIC, Block, Request, substitute
    from workflows import block_calls as calls
    from workflows import data_blocks as data
    from workflows.approval import Approval
    from workflows.branches import settled, together
    from workflows.facts import RunFacts
    from workflows.failures import Aborted, PhaseFailed, error_type, explain
    from workflows.operator import Operator
    from workflows.timeline import Timeline
    from workflows.types import AbortInput
    from workflows.versions import BLOCKS

T = TypeVar("T")
REGIONAL = ("scale", "kubernetes_job")  # the kinds that act in one region's cluster


def step(block: Block) -> str:
    """The block's phase in the timeline."""
    return f"block:{block.name}"


@dataclass(eq=False, kw_only=True)
class Blocks:
    run: RunFacts
    timeline: Timeline
    operator: Operator
    approval: Approval | None  # None: checks only (readiness)
    on_rollback: Callable[[], None]  # the run's last good state becomes the one before it (on_failure: rollback)
    on: bool = field(default=False, init=False)  # BLOCKS, read only when the runbook has blocks for this action
    source: str = field(default="", init=False)
    target: str = field(default="", init=False)
    unreachable: frozenset[str] = field(default=frozenset(), init=False)  # regions preflight could not reach
    graceful: bool = field(default=True, init=False)  # an ungraceful failover: the data tier fails over with data loss
    done: list[Block] = field(default_factory=list, init=False)  # completed, in order: undone newest first
    previous: dict[str, dict[str, int]] = field(default_factory=dict, init=False)  # scale block -> replicas found

    @property
    def mine(self) -> list[Block]:
        return [b for b in self.run.runbook.spec.blocks if b.stage(self.run.action) is not None]

    def read_patch(self) -> None:
        """At the start of the run: a runbook without blocks for this action records no marker."""
        self.on = bool(self.mine) and workflow.patched(BLOCKS)

    def at(self, stage: str) -> list[Block]:
        return [b for b in self.mine if b.stage(self.run.action) == stage] if self.on else []

    def region(self, block: Block) -> str:
        return substitute(block.region_or_target, self.source, self.target)

    # ------------------------------------------------------------------ preflight
    async def preflight(self, source: str, target: str, unreachable: list[str], *, graceful: bool = True) -> None:
        """Every block's read-only check, side by side, inside the procedure's preflight
        phase; a block that could not be done stops the run before any change."""
        if not self.on:
            return
        self.source, self.target, self.unreachable = source, target, frozenset(unreachable)
        self.graceful = graceful
        found = await together(*(self.check(b) for b in self.mine))
        for text in found:
            self.timeline.note("preflight", text)

    async def check(self, block: Block) -> str:
        """The block's read-only check: what it found, or PhaseFailed when the block could not
        be done (the run stops before any change; readiness says not ready)."""
        where = f"block {block.name} ({block.kind} at {block.stage(self.run.action) or block.at})"
        if block.kind in REGIONAL and self.region(block) in self.unreachable:
            return f"{where}: {self.region(block)} unreachable, so it will be skipped"
        if block.kind == "http":
            assert block.request is not None
            calls_ = [block.request, *([block.undo] if block.undo else [])]
            env = sorted({name for r in calls_ for name in r.headers_from_env.values()})
            missing = (await calls.http_preflight(block.name, env)).missing if env else []
            if missing:
                raise PhaseFailed(
                    f"{where}: the worker's environment has no {', '.join(missing)}; set it where the worker runs"
                )
            call = self._call(block.request)
            return f"{where}: {call.method} {call.url}, expects {block.expect or '2xx'}"
        if block.kind == "scale":
            return await self._read_scaled(block, where)
        if block.kind == "approval":
            return f"{where}: waits for `drpilot approve` ({block.message or block.name})"
        if block.kind == "aurora_global":
            return await data.aurora_preflight(self, block, where)
        return await data.job_preflight(self, block, where)

    async def _read_scaled(self, block: Block, where: str) -> str:
        assert block.workloads is not None
        region = self.region(block)
        keys = [f"{w.namespace}/{w.deployment}" for w in block.workloads]
        try:
            found = await calls.read_workloads(self.run.runbook, region, keys)
        except ActivityError as exc:
            if is_cancelled_exception(exc):
                raise
            if region == self.source and error_type(exc) != c.ErrorType.KUBE_NOT_FOUND:
                # The region left may well be dark: the block is skipped, the recovery goes on.
                self.unreachable |= {region}
                return f"{where}: {region} not reachable ({explain(exc)}), so it will be skipped"
            raise PhaseFailed(f"{where}: {explain(exc)}") from None
        self.previous[block.name] = {f"{d.namespace}/{d.name}": d.replicas for d in found.deployments}
        wanted = ", ".join(f"{w.namespace}/{w.deployment} -> {w.replicas}" for w in block.workloads)
        return f"{where}: in {region}, {wanted}"

    # ------------------------------------------------------------------ stages
    def beside(self, stage: str) -> list[Awaitable[None]]:
        """The stage as a branch to run beside the serving tier's (prepare); none without blocks
        there, so the serving tier's branches make the same commands as before."""
        return [self.stage(stage)] if self.at(stage) else []

    async def stage(self, stage: str) -> None:
        """The blocks at `stage`, one after another in the runbook's order."""
        for block in self.at(stage):
            await self._one(block, stage)

    async def _one(self, block: Block, stage: str) -> None:
        name = step(block)
        if block.kind in REGIONAL and self.region(block) in self.unreachable:
            self.timeline.skip(name, f"{self.region(block)} was unreachable in preflight: skipped")
            return
        try:
            async with self.timeline.phase(name):
                detail = await self._do(block, name)
                if detail:
                    self.timeline.note(name, detail)
        except Exception as exc:
            if isinstance(exc, Aborted) or is_cancelled_exception(exc) or self.operator.abort is not None:
                raise
            if stage in BEFORE_TRAFFIC:
                raise PhaseFailed(f"block {block.name} failed at {stage}: {explain(exc)}; DNS not changed") from None
            if block.on_failure == "rollback":
                self.on_rollback()
                raise PhaseFailed(
                    f"block {block.name} failed at {stage}: {explain(exc)}; traffic returns to where it was "
                    "(on_failure: rollback)", status="rolled_back",
                ) from None
            raise PhaseFailed(
                f"block {block.name} failed at {stage}: {explain(exc)}; traffic left where it is "
                "(on_failure: fail): finish the block by hand or run again"
            ) from None

    async def _do(self, block: Block, name: str) -> str:
        if block.kind == "approval":
            assert self.approval is not None
            await self.approval.confirm(name, block.message or f"confirm {block.name}")
            self.done.append(block)
            return ""
        if block.kind == "http":
            assert block.request is not None
            result = await self.settle(block, calls.http(self._http_input(block, block.request, "")))
            return f"{block.request.method} {result.target}: {result.status}"
        if block.kind == "scale":
            assert block.workloads is not None
            counts = {f"{w.namespace}/{w.deployment}": w.replicas for w in block.workloads}
            wait = block.run_timeout.total_seconds()
            region = self.region(block)
            scaled = await self.settle(block, calls.scale(self.run.runbook, region, counts, self.run.speed, wait))
            shown = ", ".join(f"{d.namespace}/{d.name} {d.replicas}" for d in scaled.deployments)
            return f"{region}: {shown} (not serving capacity)"
        if block.kind == "aurora_global":
            return await data.aurora_do(self, block)
        return await data.job_do(self, block)

    async def settle(self, block: Block, work: Awaitable[T]) -> T:
        """The block's activity, finished even when an abort comes meanwhile; the run then
        stops here (the block counts as done: compensation undoes it)."""
        cancelled: list[bool] = []

        def told() -> None:
            cancelled.append(True)
            self.timeline.say(f"abort requested during block {block.name}: it settles first")

        result = await settled(work, told)
        self.done.append(block)
        if cancelled or self.operator.abort is not None:
            if self.operator.abort is None:
                self.operator.abort = AbortInput(by="temporal", reason="cancellation requested through Temporal")
            raise Aborted(f"aborted during block {block.name}, after it settled")
        return result

    # ------------------------------------------------------------------ compensation
    async def undo(self) -> None:
        """Compensation, when the traffic is back where it started: each completed block's
        undo, newest first. One that fails is said loudly and the rest still run."""
        for block in reversed(self.done):
            if block.kind == "http" and block.undo is not None:
                work: Awaitable[Any] = calls.http(self._http_input(block, block.undo, "/undo"))
            elif block.kind == "scale" and self.previous.get(block.name):
                region, wait = self.region(block), block.run_timeout.total_seconds()
                work = calls.scale(self.run.runbook, region, self.previous[block.name], self.run.speed, wait)
            elif block.kind == "aurora_global":
                work = data.aurora_undo(self, block)
            else:
                continue
            name = f"undo:{block.name}"
            try:
                async with self.timeline.phase(name):
                    await work
            except Exception as exc:  # noqa: BLE001 - recorded, and the other undos still run
                self.timeline.say(f"could NOT undo block {block.name}: {explain(exc)}; undo it by hand")

    # ------------------------------------------------------------------ pieces
    def _call(self, request: Request) -> c.HttpCall:
        data = substitute(request.model_dump(mode="json"), self.source, self.target)
        return c.HttpCall(**data)

    def _http_input(self, block: Block, request: Request, suffix: str) -> c.HttpBlockInput:
        info = workflow.info()
        return c.HttpBlockInput(
            block=block.name, call=self._call(request),
            # The run (workflow and Temporal run ids: a runbook's next run is another key) and the block.
            idempotency_key=f"drpilot/{info.workflow_id}/{info.run_id}/{block.name}{suffix}",
            expect=block.expect if not suffix else None,
            timeout_seconds=block.request_timeout.total_seconds(),
        )

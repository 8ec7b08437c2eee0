"""An `aurora_global` block: make the target region's member of an Aurora global database the
writer, as AWS documents it ("Using switchover or failover in an Amazon Aurora global database").

* graceful: SwitchoverGlobalCluster. Aurora synchronises the secondaries first, so nothing is
  lost; drpilot refuses it (before any change) while the target's replication lag is above the
  block's max_lag, naming the lag.
* ungraceful, or the source region's RDS endpoint not answering: FailoverGlobalCluster with
  AllowDataLoss=True, the documented answer to a regional outage; what was not yet replicated
  (about the lag recorded) is lost.

Then it waits, polling and heartbeating, until the target member is the writer, nothing is in
flight (no FailoverState) and the member is available. The state is read before anything is
asked, so a retried activity (a worker killed mid-switchover) finds the target writing (done)
or the operation in flight (waits for it) and never asks twice. Every read goes to the target
region's endpoint: the source may be dark. The lag is CloudWatch's AuroraGlobalDBReplicationLag
(AWS/RDS, milliseconds, per secondary DB cluster, in its region): no RDS answer carries it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Self

from botocore.exceptions import ClientError
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities import contracts
from activities.blocks.aurora_reads import (
    LAG_METRIC,
    LAG_WINDOW,
    AuroraReads,
    Unreachable,
    cluster_id,
    refused,
)
from activities.contracts import (
    AuroraMember,
    AuroraReadInput,
    AuroraState,
    AuroraSwitchInput,
    AuroraSwitchResult,
    ErrorType,
)
from activities.credentials import regional_clients
from activities.kube.clusters import MIN_POLL_SECONDS, monotonic_from_wall, pause, resume_details
from activities.waits import PolledWait
from drpilot.domain.settings import Settings


class AuroraActivities(AuroraReads):
    """Aurora global databases, through one RDS and one CloudWatch client per region."""

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        from botocore.config import Config

        # Two attempts: a dark region's endpoint is known as such quickly; the activity's
        # retry policy covers a transient failure of the target's.
        config = Config(retries={"mode": "standard", "max_attempts": 2}, connect_timeout=5, read_timeout=20)
        return cls(regional_clients(config))

    def all(self) -> list[Callable[..., Any]]:
        return [self.aurora_read, self.aurora_switch]

    # ------------------------------------------------------------------ read
    @activity.defn(name=contracts.BLOCKS_AURORA_READ)
    def aurora_read(self, input: AuroraReadInput) -> AuroraState:
        """Read-only: the global cluster, each asked region's member (listed, writer, status,
        lag) and what is in flight; `problems` says what keeps the block from being ready."""
        order = sorted(input.members, key=lambda r: r != input.target)  # the target's endpoint first
        unreachable: dict[str, str] = {}
        gc, asked = None, ""
        for region in order:
            try:
                gc, asked = self._global(region, input.global_cluster), region
                break
            except Unreachable as exc:
                unreachable[region] = str(exc)
        if not asked:
            raise ApplicationError(
                f"block {input.block}: no region's RDS endpoint answered ({'; '.join(unreachable.values())})",
                type=ErrorType.AURORA_UNAVAILABLE,
            )
        state = {"block": input.block, "global_cluster": input.global_cluster}
        if gc is None:
            return AuroraState(**state, exists=False, problems=[
                f"Aurora global cluster {input.global_cluster} does not exist (asked in {asked})"])
        listed = {m["DBClusterArn"]: m for m in gc.get("GlobalClusterMembers") or []}
        members, problems = [], []
        for region, arn in input.members.items():
            member = listed.get(arn)
            status = "unreachable"
            if region not in unreachable:
                try:
                    status = self._status(region, arn)
                except Unreachable as exc:
                    unreachable[region] = str(exc)
            lag = None
            if member and not member.get("IsWriter") and status != "unreachable":
                lag = self._lag(region, arn)
            members.append(AuroraMember(region=region, arn=arn, in_global_cluster=member is not None,
                                        writer=bool(member and member.get("IsWriter")), status=status, lag_seconds=lag))
            if member is None:
                problems.append(f"{region}'s member {arn} is not in global cluster {input.global_cluster}")
            elif status == "unreachable":
                problems.append(f"{region}'s RDS endpoint does not answer ({unreachable[region]})")
            elif status != "available":
                problems.append(f"{region}'s member {cluster_id(arn)} is {status}")
        writer_arn = next((a for a, m in listed.items() if m.get("IsWriter")), "")
        writer_region = next((m.region for m in members if m.writer), None)
        if not writer_arn:
            problems.append(f"no member of global cluster {input.global_cluster} writes")
        op = gc.get("FailoverState") or {}
        operation = f"{op.get('Status')} to {op.get('ToDbClusterArn')}" if op else ""
        if operation:
            problems.append(f"global cluster {input.global_cluster} is {operation}")
        lags = [m.lag_seconds for m in members if m.lag_seconds is not None]
        lag = next((m.lag_seconds for m in members if m.region == input.target), None) if input.target else max(lags, default=None)
        return AuroraState(**state, exists=True, status=str(gc.get("Status", "")), writer_region=writer_region,
                           writer_arn=writer_arn, members=members, operation=operation, lag_seconds=lag, problems=problems)

    # ------------------------------------------------------------------ switch
    @activity.defn(name=contracts.BLOCKS_AURORA_SWITCH)
    def aurora_switch(self, input: AuroraSwitchInput) -> AuroraSwitchResult:
        target_arn = input.members.get(input.target)
        if not target_arn:
            raise _misconfigured(input, f"has no member in {input.target} (members: {', '.join(input.members)})")
        resume = resume_details()
        gc = self._read_target(input)
        if gc is None:
            raise _misconfigured(input, f"names global cluster {input.global_cluster}, which does not exist")
        listed = {m["DBClusterArn"]: m for m in gc.get("GlobalClusterMembers") or []}
        if target_arn not in listed:
            raise _misconfigured(input, f"names {target_arn} in {input.target}, not a member of {input.global_cluster}")
        before = resume.get("writer_before") or _writer(listed, input.members)
        op = gc.get("FailoverState") or {}
        if op and op.get("ToDbClusterArn") != target_arn:
            raise ApplicationError(
                f"block {input.block}: global cluster {input.global_cluster} is {op.get('Status')} to "
                f"{op.get('ToDbClusterArn')}, not {input.target}; waiting for that to end before asking",
                type=ErrorType.AURORA_BUSY,
            )
        if op:  # ours, asked by an earlier attempt (or by hand): wait for it, never ask again
            mode = "failover" if op.get("IsDataLossAllowed") else "switchover"
            reason = resume.get("reason") or f"a {mode} to {input.target} was already in progress"
        elif listed[target_arn].get("IsWriter"):
            mode = resume.get("mode") or "already"
            reason = resume.get("reason") or f"{input.target} was already the writer"
        else:
            if resume.get("phase") == "requested":
                raise _cancelled(input, resume.get("mode", "switchover"), before)
            mode, reason = self._choose(input)
            resume = self._ask(input, gc, target_arn, mode, reason, before)
        started = float(resume.get("started_at") or time.time())
        lag = resume.get("lag")
        base = {"phase": "requested", "mode": mode, "reason": reason, "writer_before": before, "lag": lag, "started_at": started}
        waits = self._wait(input, target_arn, mode, before, base)
        return AuroraSwitchResult(
            block=input.block, global_cluster=input.global_cluster, writer_before=before, writer_after=input.target,
            mode=mode, data_loss_allowed=mode == "failover", lag_seconds=lag, reason=reason,
            seconds=round(time.time() - started, 3) if mode != "already" else 0.0, waits=waits,
        )

    def _read_target(self, input: AuroraSwitchInput) -> dict[str, Any] | None:
        try:
            return self._global(input.target, input.global_cluster)
        except Unreachable as exc:
            raise ApplicationError(
                f"block {input.block}: {input.target}'s RDS endpoint, where {input.global_cluster} becomes "
                f"writable, does not answer ({exc}); will retry", type=ErrorType.AURORA_UNAVAILABLE,
            ) from None

    def _choose(self, input: AuroraSwitchInput) -> tuple[str, str]:
        if input.mode == "ungraceful":
            return "failover", "ungraceful: failing over with data loss allowed"
        source_arn = input.members.get(input.source)
        for probe in (1, 2):  # dark twice, a poll apart: a blip never costs data
            try:
                if source_arn:
                    self._status(input.source, source_arn)
                break
            except Unreachable as exc:
                if probe == 2:
                    return "failover", f"{input.source}'s RDS endpoint does not answer ({exc}): failing over with data loss allowed"
                pause(max(MIN_POLL_SECONDS, self.poll_seconds / input.speed))
        return "switchover", "graceful: switching over (the secondaries synchronised first, no data lost)"

    def _ask(self, input: AuroraSwitchInput, gc: dict[str, Any], target_arn: str, mode: str, reason: str, before: str) -> dict[str, Any]:
        """Check the lag, then ask once; the heartbeat says what was asked before it is."""
        try:
            lag = self._lag(input.target, target_arn)
        except Unreachable:
            lag = None
        if mode == "switchover" and input.max_lag_seconds is not None and lag is not None and lag > input.max_lag_seconds:
            raise ApplicationError(
                f"block {input.block}: Aurora global cluster {input.global_cluster} replicates to {input.target} "
                f"{lag:g} s behind, above max_lag {input.max_lag_seconds:g} s: not switching over (nothing was "
                "changed); wait for the lag to fall, or fail over ungracefully (data loss allowed)",
                {"lag_seconds": lag}, type=ErrorType.AURORA_LAG_TOO_HIGH, non_retryable=True,
            )
        if lag is None:
            reason += f"; the lag was unknown (no {LAG_METRIC} datapoint in {int(LAG_WINDOW.total_seconds() // 60)} min)"
        details = {"mode": mode, "reason": reason, "writer_before": before, "lag": lag, "started_at": time.time()}
        activity.heartbeat({**details, "phase": "requesting"})
        params: dict[str, Any] = {"GlobalClusterIdentifier": gc["GlobalClusterIdentifier"], "TargetDbClusterIdentifier": target_arn}
        try:
            if mode == "switchover":
                self._call("rds", input.target, "switchover_global_cluster", **params)
            else:
                self._call("rds", input.target, "failover_global_cluster", **params, AllowDataLoss=True)
        except Unreachable as exc:
            raise ApplicationError(f"block {input.block}: asking for the {mode}: {exc}; will retry",
                                   type=ErrorType.AURORA_UNAVAILABLE) from None
        except ClientError as exc:
            again = self._read_target(input) or {}
            if (again.get("FailoverState") or {}).get("ToDbClusterArn") != target_arn:
                raise refused(exc, f"{mode} {input.global_cluster} to {input.target}") from None
        details["phase"] = "requested"
        activity.heartbeat(details)
        return details

    def _wait(self, input: AuroraSwitchInput, target_arn: str, mode: str, before: str, base: dict[str, Any]) -> list:
        started = float(base["started_at"])
        deadline = started + input.timeout_seconds / input.speed
        wait = PolledWait("aurora", input.speed, self.poll_seconds, monotonic_from_wall(started))
        poll = max(MIN_POLL_SECONDS, self.poll_seconds / input.speed)
        while True:
            gc = self._read_target(input) or {}
            member = next((m for m in gc.get("GlobalClusterMembers") or [] if m["DBClusterArn"] == target_arn), {})
            op = gc.get("FailoverState") or {}
            status = self._target_status(input, target_arn) if member.get("IsWriter") and not op else ""
            if status == "available":
                return wait.done() if mode != "already" else []
            if not op and not member.get("IsWriter"):
                raise _cancelled(input, mode, before)
            activity.heartbeat({**base, "operation": op.get("Status", ""), "target_status": status})
            wait.pending()
            if time.time() >= deadline:
                raise ApplicationError(
                    f"block {input.block}: {input.target} is not the available writer of {input.global_cluster} "
                    f"{input.timeout_seconds:g} s (simulated) after the {mode} was asked "
                    f"({op.get('Status') or 'target ' + (status or 'not writing')})",
                    type=ErrorType.AURORA_SWITCH_TIMEOUT, non_retryable=True,
                )
            pause(min(poll, max(0.0, deadline - time.time())))

    def _target_status(self, input: AuroraSwitchInput, arn: str) -> str:
        try:
            return self._status(input.target, arn)
        except Unreachable:
            return "unreachable"


def _writer(listed: dict[str, dict[str, Any]], members: dict[str, str]) -> str:
    """The region whose member writes (its ARN when no asked region's member does)."""
    arn = next((a for a, m in listed.items() if m.get("IsWriter")), "")
    return next((r for r, a in members.items() if a == arn), arn)


def _misconfigured(input: AuroraSwitchInput, what: str) -> ApplicationError:
    return ApplicationError(f"block {input.block} {what}; fix the block's global_cluster / members",
                            type=ErrorType.AURORA_MISCONFIGURED, non_retryable=True)


def _cancelled(input: AuroraSwitchInput, mode: str, before: str) -> ApplicationError:
    return ApplicationError(
        f"block {input.block}: Aurora ended the {mode} of {input.global_cluster} without making {input.target} "
        f"the writer (the writer is still {before}): it was cancelled; see the global cluster's events",
        type=ErrorType.AURORA_SWITCH_CANCELLED, non_retryable=True,
    )

"""Aurora Global Database for the twin: the switchover and failover moto lacks.

moto keeps global clusters and their member DB clusters (CreateGlobalCluster,
DescribeGlobalClusters, CreateDBCluster with GlobalClusterIdentifier, DescribeDBClusters)
but answers SwitchoverGlobalCluster and FailoverGlobalCluster with NotImplemented. The AWS
front and moto run in one process, so this model changes moto's own objects (the global
cluster's Status and FailoverState, each member's IsWriter) and every DescribeGlobalClusters
moto answers shows it. Modelled on AWS's RDS API reference and the Aurora User Guide
("Using switchover or failover in an Amazon Aurora global database"):

* SwitchoverGlobalCluster (a planned switchover: the secondaries are synchronised first, no
  data is lost) needs every member available: refused (InvalidDBClusterStateFault) while a
  member's Region is down. FailoverGlobalCluster without AllowDataLoss is the same switchover.
* FailoverGlobalCluster with AllowDataLoss (the unplanned failover) only needs the target:
  it works while the old writer's Region is down; writes not yet replicated are lost.
* Either takes time: the global cluster's Status and FailoverState.Status say
  `switching-over` / `failing-over` until the target is the writer; a second operation is
  refused (InvalidGlobalClusterStateFault) meanwhile. A cancelled switchover
  (`aurora_switchover_fails`) shows FailoverState `cancelling`, then everything as before.
* Replication lag is not in any RDS answer: Aurora publishes it to CloudWatch as
  AuroraGlobalDBReplicationLag (AWS/RDS, milliseconds, dimension DBClusterIdentifier, in each
  secondary's Region). `LagMetrics` is a moto CloudWatch metric provider answering it with
  `aurora_lag_seconds` (or a typical sub-second lag), computed when asked, so GetMetricData
  always shows the current value.

The front answers RDS requests signed for a Region in `region_down` with 503: that Region's
endpoint is dark, as in a regional outage. It counts accepted operations so tests can prove
a retried activity asked once.
"""

from __future__ import annotations

import threading
import time
import weakref
from dataclasses import dataclass
from typing import Any

from moto.cloudwatch.models import MetricDatum
from moto.core.common_models import CloudWatchMetricProvider
from moto.rds.models import rds_backends

from drpilot.domain.runbook import Role, Runbook
from drpilot_twin.aws.ecr import ACCOUNT
from drpilot_twin.faults import FaultBoard

# Simulated seconds (divided by the twin's speed) from the request until the target writes:
# AWS gives switchovers and failovers an RTO of minutes.
SWITCHOVER_SECONDS = 60.0
FAILOVER_SECONDS = 30.0
# Aurora's typical cross-Region replication lag (AWS: "typically under a second").
TYPICAL_LAG_SECONDS = 0.05
LAG_METRIC = "AuroraGlobalDBReplicationLag"
ENGINE = "aurora-postgresql"
# moto keeps every global cluster in its us-east-1 backend (DescribeGlobalClusters reads it
# from any Region, as AWS answers it from any Region).
GLOBAL_BACKEND_REGION = "us-east-1"


class RdsRefusal(Exception):
    """An error RDS answers: HTTP status, error code, message."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


@dataclass
class Operation:
    kind: str  # switchover | failover
    global_cluster: str
    source_arn: str  # the writer when it was asked
    target_arn: str
    data_loss: bool
    started: float  # time.monotonic()
    done_at: float
    cancelled: bool  # aurora_switchover_fails: Aurora gives it up, nothing changes


def arn_region(arn: str) -> str:
    return arn.split(":")[3] if arn.count(":") >= 5 else ""


def _global(identifier: str) -> Any:
    return rds_backends[ACCOUNT][GLOBAL_BACKEND_REGION].global_clusters.get(identifier)


class AuroraGlobal:
    """The switchovers and failovers in flight, applied to moto's objects when their time comes."""

    def __init__(self, board: FaultBoard, speed: float = 1.0):
        self.board, self.speed = board, speed
        self._lock = threading.Lock()
        self._ops: dict[str, Operation] = {}  # global cluster id -> in flight
        self.accepted: list[Operation] = []  # every operation the front accepted (tests count them)
        self.requests = 0  # SwitchoverGlobalCluster / FailoverGlobalCluster calls, refused ones too
        _LIVE[:] = [ref for ref in _LIVE if ref() is not None] + [weakref.ref(self)]

    def forget(self) -> None:
        """Nothing in flight, nothing counted (moto was reset)."""
        with self._lock:
            self._ops.clear()
            self.accepted.clear()
            self.requests = 0

    # ------------------------------------------------------------------ requests
    def start(self, action: str, params: dict[str, str]) -> Operation:
        """Accept SwitchoverGlobalCluster / FailoverGlobalCluster or raise RdsRefusal."""
        self.settle()
        with self._lock:
            self.requests += 1
        identifier = params.get("GlobalClusterIdentifier", "").lower()
        target = params.get("TargetDbClusterIdentifier", "")
        data_loss = params.get("AllowDataLoss", "").lower() == "true"
        if action == "FailoverGlobalCluster" and data_loss and params.get("Switchover", "").lower() == "true":
            raise RdsRefusal(400, "InvalidParameterCombination", "AllowDataLoss can't be specified together with Switchover.")
        kind = "failover" if data_loss else "switchover"
        with self._lock:
            gc = _global(identifier)
            if gc is None:
                raise RdsRefusal(404, "GlobalClusterNotFoundFault", f"Global cluster {identifier} not found.")
            member = next((m for m in gc.members if target in (m.db_cluster_arn, m.db_cluster_identifier)), None)
            if member is None:
                raise RdsRefusal(404, "DBClusterNotFoundFault", f"DB cluster {target} is not a member of global cluster {identifier}.")
            if identifier in self._ops:
                op = self._ops[identifier]
                raise RdsRefusal(400, "InvalidGlobalClusterStateFault",
                                 f"Global cluster {identifier} is in {gc.status} state (a {op.kind} to {op.target_arn}).")
            if member.is_writer:
                raise RdsRefusal(400, "InvalidGlobalClusterStateFault",
                                 f"DB cluster {member.db_cluster_arn} is already the primary cluster of global cluster {identifier}.")
            down = self.board.now.region_down
            # A switchover synchronises every member first: each must be available. A failover
            # with data loss allowed needs only the target.
            needed = gc.members if kind == "switchover" else [member]
            dark = [m.db_cluster_arn for m in needed if arn_region(m.db_cluster_arn) in down]
            if dark:
                hint = " (a failover with AllowDataLoss does not need it)" if kind == "switchover" else ""
                raise RdsRefusal(400, "InvalidDBClusterStateFault", f"DB cluster {dark[0]} is not available{hint}.")
            writer = next((m.db_cluster_arn for m in gc.members if m.is_writer), "")
            now = time.monotonic()
            seconds = (SWITCHOVER_SECONDS if kind == "switchover" else FAILOVER_SECONDS) / self.speed
            op = Operation(kind, identifier, writer, member.db_cluster_arn, data_loss, now, now + seconds,
                           cancelled=kind == "switchover" and self.board.now.aurora_switchover_fails)
            self._ops[identifier] = op
            self.accepted.append(op)
            status = "switching-over" if kind == "switchover" else "failing-over"
            gc.status = status
            gc.failover_state = {"Status": status, "FromDbClusterArn": writer, "ToDbClusterArn": member.db_cluster_arn,
                                 "IsDataLossAllowed": data_loss}
            return op

    def settle(self) -> None:
        """Apply what has finished (called before every RDS request the front serves)."""
        now = time.monotonic()
        with self._lock:
            for identifier, op in list(self._ops.items()):
                gc = _global(identifier)
                if gc is None:
                    del self._ops[identifier]
                    continue
                if op.cancelled and now >= (op.started + op.done_at) / 2 and now < op.done_at:
                    gc.failover_state = {**(gc.failover_state or {}), "Status": "cancelling"}
                if now < op.done_at:
                    continue
                if not op.cancelled:
                    for m in gc.members:
                        m.is_writer = m.db_cluster_arn == op.target_arn
                gc.status, gc.failover_state = "available", None
                del self._ops[identifier]

    # ------------------------------------------------------------------ seeding
    def seed(self, client_for: Any, global_cluster: str, members: dict[str, str], writer_region: str) -> None:
        """The global cluster with a member DB cluster per region (ARN's identifier), the
        `writer_region`'s writing; an existing one (moto's state outlives a twin in one
        process) is put back to that writer with nothing in flight."""
        identifier = global_cluster.lower()
        writer_arn = members[writer_region]
        order = [writer_region, *[r for r in members if r != writer_region]]  # moto: the first member writes
        with self._lock:
            self._ops.pop(identifier, None)
        if _global(identifier) is None:
            client_for(GLOBAL_BACKEND_REGION).create_global_cluster(GlobalClusterIdentifier=global_cluster, Engine=ENGINE)
        gc = _global(identifier)
        present = {m.db_cluster_arn for m in gc.members}
        for region in order:
            arn = members[region]
            if arn in present:
                continue
            rds = client_for(arn_region(arn) or region)
            extra = {"MasterUsername": "drpilot", "MasterUserPassword": "sandbox-password"} if region == writer_region else {}
            rds.create_db_cluster(DBClusterIdentifier=arn.rsplit(":", 1)[-1], Engine=ENGINE,
                                  GlobalClusterIdentifier=global_cluster, **extra)
        for m in gc.members:
            m.is_writer = m.db_cluster_arn == writer_arn
            m.status = "available"  # moto answers "creating" to the first describe otherwise
        gc.status, gc.failover_state = "available", None

    def describe(self, global_cluster: str, members: dict[str, str]) -> dict[str, Any]:
        """The global cluster as `sandbox status` shows it: who writes (a region of
        `members`), its Status, what is in flight."""
        self.settle()
        gc = _global(global_cluster.lower())
        if gc is None:
            return {"writer": None, "status": "absent"}
        arn = next((m.db_cluster_arn for m in gc.members if m.is_writer), "")
        op = gc.failover_state or {}
        return {"writer": next((r for r, a in members.items() if a == arn), arn or None), "status": gc.status,
                **({"operation": f"{op.get('Status')} to {op.get('ToDbClusterArn')}"} if op else {})}

    # ------------------------------------------------------------------ lag
    def lag_seconds(self) -> float:
        return self.board.now.aurora_lag_seconds or TYPICAL_LAG_SECONDS


def aurora_blocks(runbook: Runbook) -> list[dict[str, Any]]:
    """The runbook's `aurora_global` blocks (spec.blocks), as plain data."""
    spec = runbook.model_dump(mode="json").get("spec") or {}
    return [b for b in spec.get("blocks") or [] if isinstance(b, dict) and b.get("kind") == "aurora_global"]


def seed_aurora(model: AuroraGlobal, client_for: Any, runbook: Runbook) -> None:
    """A global cluster per aurora_global block, written in the runbook's primary region."""
    primary = next((n for n, r in runbook.regions.items() if r.role is Role.primary), next(iter(runbook.regions)))
    for block in aurora_blocks(runbook):
        members = {str(r): str(arn) for r, arn in (block.get("members") or {}).items()}
        if members:
            model.seed(client_for, str(block["global_cluster"]), members, primary if primary in members else next(iter(members)))


# Models of the running fronts: the metric provider answers with the newest one's faults.
_LIVE: list[weakref.ref[AuroraGlobal]] = []


class LagMetrics(CloudWatchMetricProvider):
    """AuroraGlobalDBReplicationLag of every secondary in the asked Region, now (moto's
    CloudWatch asks its metric providers on every read)."""

    @staticmethod
    def get_cloudwatch_metrics(account_id: str, region: str) -> list[MetricDatum]:
        live = [m for m in (ref() for ref in _LIVE) if m is not None]
        if not live or account_id != ACCOUNT:
            return []
        lag_ms = live[-1].lag_seconds() * 1000.0
        backend = rds_backends[account_id][GLOBAL_BACKEND_REGION]
        return [
            MetricDatum(namespace="AWS/RDS", name=LAG_METRIC, value=lag_ms,
                        dimensions=[{"Name": "DBClusterIdentifier", "Value": m.db_cluster_identifier}],
                        timestamp=None, unit="Milliseconds")
            for gc in list(backend.global_clusters.values())
            for m in gc.members
            if not m.is_writer and arn_region(m.db_cluster_arn) == region
        ]

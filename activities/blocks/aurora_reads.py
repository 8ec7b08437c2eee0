"""How the `aurora_global` activities read AWS: the global cluster and a member's status from
RDS, a member's replication lag from CloudWatch (AuroraGlobalDBReplicationLag, AWS/RDS,
milliseconds, per secondary DB cluster, in its region: no RDS answer carries it). A region's
endpoint that does not answer is `Unreachable`, which the activities read as "that region is
dark"; a refusal is a non-retryable error naming it."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from temporalio.exceptions import ApplicationError

from activities.contracts import ErrorType

# Simulated seconds between polls of a switchover (divided by the speed).
POLL_SECONDS = 5.0
LAG_METRIC = "AuroraGlobalDBReplicationLag"
LAG_WINDOW = timedelta(minutes=5)  # Aurora publishes it every minute: a newer datapoint is expected


class Unreachable(Exception):
    """A region's RDS (or CloudWatch) endpoint did not answer."""


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def cluster_id(arn: str) -> str:
    return arn.rsplit(":", 1)[-1]


class AuroraReads:
    """One RDS and one CloudWatch client per region (`aws(service, region)`)."""

    def __init__(self, aws: Callable[[str, str], Any], *, poll_seconds: float = POLL_SECONDS):
        self.aws, self.poll_seconds = aws, poll_seconds

    def _call(self, service: str, region: str, operation: str, **params: Any) -> dict[str, Any]:
        """One call; a dark endpoint is Unreachable, a refusal a non-retryable error naming it."""
        try:
            return getattr(self.aws(service, region), operation)(**params)
        except ClientError as exc:
            status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
            code = _code(exc)
            if code in ("Throttling", "ThrottlingException"):  # busy, not dark: never a reason to lose data
                raise ApplicationError(f"{service} in {region} is throttling drpilot's requests ({code}); will retry",
                                       type=ErrorType.AURORA_UNAVAILABLE) from None
            if status >= 500:
                raise Unreachable(f"{service} in {region} answered {code or status}") from None
            raise exc
        except BotoCoreError as exc:
            raise Unreachable(f"{service} in {region}: {exc}") from None

    def _global(self, region: str, global_cluster: str) -> dict[str, Any] | None:
        try:
            answer = self._call("rds", region, "describe_global_clusters", GlobalClusterIdentifier=global_cluster)
        except ClientError as exc:
            if _code(exc) == "GlobalClusterNotFoundFault":
                return None
            raise refused(exc, f"read global cluster {global_cluster} in {region}") from None
        wanted = global_cluster.lower()
        return next((g for g in answer.get("GlobalClusters") or [] if g["GlobalClusterIdentifier"].lower() == wanted), None)

    def _status(self, region: str, arn: str) -> str:
        try:
            clusters = self._call("rds", region, "describe_db_clusters", DBClusterIdentifier=arn)["DBClusters"]
        except ClientError as exc:
            if _code(exc) == "DBClusterNotFoundFault":
                return "not found"
            raise refused(exc, f"read DB cluster {arn} in {region}") from None
        return str(clusters[0].get("Status", "")) if clusters else "not found"

    def _lag(self, region: str, arn: str) -> float | None:
        """The member's latest AuroraGlobalDBReplicationLag in seconds; None: no datapoint."""
        now = datetime.now(UTC)
        query = {
            "Id": "lag",
            "MetricStat": {
                "Metric": {"Namespace": "AWS/RDS", "MetricName": LAG_METRIC,
                           "Dimensions": [{"Name": "DBClusterIdentifier", "Value": cluster_id(arn)}]},
                "Period": 60, "Stat": "Maximum",
            },
        }
        try:
            answer = self._call("cloudwatch", region, "get_metric_data", MetricDataQueries=[query],
                                StartTime=now - LAG_WINDOW, EndTime=now + timedelta(minutes=1), ScanBy="TimestampDescending")
        except ClientError as exc:
            raise refused(exc, f"read {LAG_METRIC} of {arn} in {region}") from None
        values = (answer.get("MetricDataResults") or [{}])[0].get("Values") or []
        return round(float(values[0]) / 1000.0, 3) if values else None



def refused(exc: ClientError, doing: str) -> ApplicationError:
    code = _code(exc) or "Error"
    message = exc.response.get("Error", {}).get("Message", "") or str(exc)
    fix = "; grant drpilot's role the rds / cloudwatch actions of infra/aws/iam-policy.json" if "AccessDenied" in code else ""
    return ApplicationError(f"RDS refused to {doing}: {code}: {message}{fix}", type=ErrorType.rdsrefused(code), non_retryable=True)

"""The twin's AWS endpoint: an HTTP front that forwards to moto and adds what moto lacks.

boto3 reaches it through `AWS_ENDPOINT_URL` (one endpoint for S3 and Route53). Every
request goes to moto unchanged except where real AWS behaves differently in ways drpilot
must handle (docs/architecture.md, "The sandbox twin"):

* Route53 ChangeResourceRecordSets: moto answers INSYNC at once with one constant change
  id. Here every change gets its own id and stays PENDING for
  `route53_pending_seconds / speed`; GetChange then answers INSYNC, as Route53 does once
  its name servers have the change.
* Route53 throttling: while `FaultBoard.take_route53_throttle()` says so, any Route53 call
  answers 400 `Throttling` / "Rate exceeded" with the XML Route53 sends.
* Route53's control plane down (`route53_control_plane_down`): ChangeResourceRecordSets and
  GetChange answer 503 ServiceUnavailable, as a Route53 outage in us-east-1 would; record
  reads (ListResourceRecordSets, ListHostedZonesByName) still answer.
* Route53 hosted zone ids: moto chooses them, real runbooks often pin one
  (`spec.dns.zone_id`). `alias_hosted_zone(alias, zone_id)` makes the front answer for the
  runbook's id too: requests under /hostedzone/ALIAS go to moto's zone, and moto's id is
  written back as ALIAS in what they return.
* S3 Glacier restore: moto finishes a restore at once. Here a restore requested while
  `glacier_delay_seconds / speed` is set stays ongoing that long: HEAD shows
  `x-amz-restore: ongoing-request="true"`, GET and copies from it answer 403
  InvalidObjectState, another restore request answers 409 RestoreAlreadyInProgress.

* ECR DescribeImages: the image `image_missing.REGION` names answers ImageNotFoundException
  in that region (moto holds the per-region registries the twin seeds).
* Service Quotas GetServiceQuota: moto has no EC2 quotas in any region. The front answers
  "Running On-Demand G and VT instances" / "... P instances" with the `quota` fault's vCPUs.
* RDS SwitchoverGlobalCluster / FailoverGlobalCluster (moto has neither) and Aurora's
  replication lag in CloudWatch: twin/drpilot_twin/aws/aurora.py. RDS requests signed for a
  region in `region_down` answer 503: that region's endpoint is dark.

The front also counts what it saw (changes, restore requests) so tests can prove an
activity run twice made one change.
"""

from __future__ import annotations

import contextlib
import json
import re
import secrets
import string
import threading
import time
import uuid
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import parse_qsl, unquote
from xml.sax.saxutils import escape

import httpx
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from drpilot_twin.aws.aurora import AuroraGlobal, RdsRefusal
from drpilot_twin.aws.ecr import ACCOUNT
from drpilot_twin.aws.moto_server import MotoServer
from drpilot_twin.faults import DEFAULT_GPU_VCPU_QUOTA, FaultBoard
from drpilot_twin.loopback import LoopbackServer

ROUTE53_NS = "https://route53.amazonaws.com/doc/2013-04-01/"
# Service Quotas' codes for EC2's On-Demand GPU instance vCPU quotas, with their names.
GPU_QUOTAS = {"L-DB2E81BA": "Running On-Demand G and VT instances", "L-417A185B": "Running On-Demand P instances"}
ROUTE53_PREFIX = "/2013-04-01/"
# Hop-by-hop headers belong to one connection and are never forwarded (RFC 9110 7.6.1);
# content-length is recomputed for the body actually sent.
_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "expect",
    "content-length",
}
_ID_CHARS = string.ascii_uppercase + string.digits
_CHANGE_ID = re.compile(rb"<ChangeInfo>.*?<Id>(?:/change/)?([^<]+)</Id>", re.S)


@dataclass
class Route53Change:
    """One ChangeResourceRecordSets call as the front answered it."""

    id: str  # without the /change/ prefix, e.g. C3QX9F0K2M7ZP1
    zone_id: str
    submitted_at: datetime
    insync_at: float  # time.monotonic() from which GetChange answers INSYNC
    changes: int  # Change elements in the batch
    comment: str | None = None

    def status(self) -> str:
        return "INSYNC" if time.monotonic() >= self.insync_at else "PENDING"


@dataclass
class GlacierRestore:
    bucket: str
    key: str
    requested_at: float
    ready_at: float

    def ongoing(self) -> bool:
        return time.monotonic() < self.ready_at


@dataclass
class FrontLog:
    """What the front saw since the last reset, for tests and `sandbox status`."""

    route53_changes: list[Route53Change] = field(default_factory=list)
    throttled: int = 0
    control_plane_refused: int = 0  # ChangeResourceRecordSets / GetChange refused while the control plane was down
    restore_requests: Counter[tuple[str, str]] = field(default_factory=Counter)


class AwsFront:
    """HTTP front on 127.0.0.1 forwarding to moto; starts its own moto unless given one."""

    def __init__(
        self,
        board: FaultBoard,
        speed: float = 1.0,
        upstream: str | None = None,
        port: int = 0,
    ):
        self.board = board
        self.speed = speed
        self._upstream = upstream
        self._moto: MotoServer | None = None
        self._lock = threading.Lock()
        self._changes: dict[str, Route53Change] = {}
        self._restores: dict[tuple[str, str], GlacierRestore] = {}
        self._zone_aliases: dict[str, str] = {}  # runbook's hosted zone id -> moto's
        self.log = FrontLog()
        self.aurora = AuroraGlobal(board, speed)
        self._client: httpx.AsyncClient | None = None
        self._server = LoopbackServer(self._asgi, port=port, name="aws-front", lifespan="on")

    # ------------------------------------------------------------------ lifecycle
    @property
    def url(self) -> str:
        return self._server.url

    @property
    def upstream(self) -> str:
        return self._upstream or ""

    def start(self) -> None:
        if self._upstream is None:
            self._moto = MotoServer()
            self._moto.start()
            self._upstream = self._moto.url
        self._server.start()
        httpx.get(f"{self.url}/moto-api/", timeout=5)  # answers only once both are up

    def stop(self) -> None:
        self._server.stop()
        if self._moto is not None:
            self._moto.stop()
            self._moto = None
            self._upstream = None

    def reset(self) -> None:
        """Empty moto and forget changes, restores and counts (between tests)."""
        httpx.post(f"{self.url}/moto-api/reset", timeout=10).raise_for_status()

    def alias_hosted_zone(self, alias: str, zone_id: str) -> None:
        """Answer for hosted zone `alias` (e.g. a runbook's zone_id) with moto's `zone_id`."""
        with self._lock:
            self._zone_aliases[alias.rsplit("/", 1)[-1]] = zone_id.rsplit("/", 1)[-1]

    def _forget(self) -> None:
        with self._lock:
            self._changes.clear()
            self._restores.clear()
            self._zone_aliases.clear()  # moto's zones are gone; seeding aliases them again
            self.log = FrontLog()
        self.aurora.forget()

    # ------------------------------------------------------------------ what it saw
    @property
    def change_count(self) -> int:
        """Route53 ChangeResourceRecordSets calls that moto accepted."""
        with self._lock:
            return len(self.log.route53_changes)

    def change(self, change_id: str) -> Route53Change | None:
        with self._lock:
            return self._changes.get(change_id.rsplit("/", 1)[-1])

    def restore_count(self, bucket: str, key: str) -> int:
        """restore_object calls seen for s3://bucket/key (including refused repeats)."""
        with self._lock:
            return self.log.restore_requests[(bucket, key)]

    # ------------------------------------------------------------------ ASGI
    async def _asgi(self, scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        request = Request(scope, receive)
        response = await self._handle(request)
        await response(scope, receive, send)

    async def _lifespan(self, receive, send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                # One pooled client per front, living on the server's own event loop.
                self._client = httpx.AsyncClient(timeout=60, follow_redirects=False)
                self._client.headers = httpx.Headers()  # send exactly what boto3 sent
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self._client is not None:
                    await self._client.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _handle(self, request: Request) -> Response:
        body = await request.body()
        path = request.url.path
        if path.startswith("/moto-api/reset") and request.method == "POST":
            response = await self._forward(request, body)
            self._forget()
            return response
        if path.startswith("/moto-api"):
            return await self._forward(request, body)
        service = _service(request)
        if service == "route53":
            return await self._route53(request, body)
        if service == "servicequotas":
            return self._service_quota(request, body)
        if service == "ecr":
            return await self._ecr(request, body)
        if service == "rds":
            return await self._rds(request, body)
        if service == "monitoring":  # CloudWatch: moto, with Aurora's lag from aurora.LagMetrics
            return await self._forward(request, body)
        return await self._s3(request, body)

    # ------------------------------------------------------------------ ECR, Service Quotas
    async def _ecr(self, request: Request, body: bytes) -> Response:
        """DescribeImages answers ImageNotFoundException for the image `image_missing` names
        in the request's region (the rest goes to moto's per-region registries)."""
        region = _region(request)
        missing = self.board.now.image_missing.get(region, "")
        if missing and request.headers.get("x-amz-target", "").endswith(".DescribeImages"):
            asked = json.loads(body or b"{}")
            repository = asked.get("repositoryName", "")
            for image_id in asked.get("imageIds") or []:
                wanted = f"{repository}:{image_id.get('imageTag')}" if image_id.get("imageTag") else f"{repository}@{image_id.get('imageDigest')}"
                if missing.endswith("/" + wanted) or missing == wanted:
                    return _json_error(
                        400, "ImageNotFoundException",
                        f"The image with imageId {json.dumps(image_id)} does not exist within the repository with "
                        f"name '{repository}' in the registry with id '{asked.get('registryId', ACCOUNT)}'",
                    )
        return await self._forward(request, body)

    def _service_quota(self, request: Request, body: bytes) -> Response:
        """GetServiceQuota for EC2's On-Demand GPU instance quotas (moto has none in any
        region): the `quota` fault's vCPUs for the region, else the twin's default."""
        asked = json.loads(body or b"{}")
        if not request.headers.get("x-amz-target", "").endswith(".GetServiceQuota"):
            return _json_error(400, "UnknownOperationException", "the twin answers GetServiceQuota only")
        code = asked.get("QuotaCode", "")
        if asked.get("ServiceCode") != "ec2" or code not in GPU_QUOTAS:
            return _json_error(400, "NoSuchResourceException", f"The request failed because the specified service quota {code} does not exist.")
        region = _region(request)
        value = float(self.board.now.quota.get(region, DEFAULT_GPU_VCPU_QUOTA))
        quota = {
            "ServiceCode": "ec2", "ServiceName": "Amazon Elastic Compute Cloud (Amazon EC2)",
            "QuotaArn": f"arn:aws:servicequotas:{region}:{ACCOUNT}:ec2/{code}", "QuotaCode": code,
            "QuotaName": GPU_QUOTAS[code], "Value": value, "Unit": "None", "Adjustable": True, "GlobalQuota": False,
        }
        return Response(json.dumps({"Quota": quota}), media_type="application/x-amz-json-1.1",
                        headers={"x-amzn-requestid": _request_id()})

    async def _rds(self, request: Request, body: bytes) -> Response:
        """RDS (query protocol): a dark region's endpoint answers 503; a switchover or failover
        of a global cluster is accepted here (aurora.py) and answered with the global cluster
        as moto then describes it; the rest goes to moto, after what finished is applied."""
        if _region(request) in self.board.now.region_down:
            return _rds_error(503, "ServiceUnavailable", "Service Unavailable", sender=False)
        params = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        action = params.get("Action", "")
        if action == "DescribeGlobalClusters" and params.get("GlobalClusterIdentifier"):
            # moto lists every global cluster whatever the filter; RDS answers the one named.
            self.aurora.settle()
            upstream, content = await self._buffered(request, body)
            named = _global_cluster_xml(content, params["GlobalClusterIdentifier"]) if upstream.status_code == 200 else None
            if upstream.status_code == 200 and named is None:
                return _rds_error(404, "GlobalClusterNotFoundFault", f"Global cluster {params['GlobalClusterIdentifier']} not found.")
            if named is not None:
                content = _rds_answer(action, b"<GlobalClusters>" + named.replace(b"<GlobalCluster>", b"<GlobalClusterMember>", 1)
                                      .rsplit(b"</GlobalCluster>", 1)[0] + b"</GlobalClusterMember></GlobalClusters>")
            return Response(content, upstream.status_code, media_type="text/xml", headers={"x-amzn-RequestId": str(uuid.uuid4())})
        if action not in ("SwitchoverGlobalCluster", "FailoverGlobalCluster"):
            self.aurora.settle()
            return await self._forward(request, body)
        try:
            self.aurora.start(action, params)
        except RdsRefusal as refusal:
            return _rds_error(refusal.status, refusal.code, refusal.message)
        describe = f"Action=DescribeGlobalClusters&Version={params.get('Version', '2014-10-31')}&GlobalClusterIdentifier="
        upstream, content = await self._buffered(request, (describe + params["GlobalClusterIdentifier"]).encode())
        return Response(_rds_answer(action, _global_cluster_xml(content, params["GlobalClusterIdentifier"]) or b""),
                        upstream.status_code, media_type="text/xml",
                        headers={"x-amzn-RequestId": str(uuid.uuid4())})

    async def _forward(self, request: Request, body: bytes) -> Response:
        upstream = await self._send(request, body)
        headers = {k: v for k, v in upstream.headers.multi_items() if k.lower() not in _HOP}
        if "content-length" in upstream.headers:
            headers["content-length"] = upstream.headers["content-length"]
        return StreamingResponse(
            upstream.aiter_raw(),
            status_code=upstream.status_code,
            headers=headers,
            background=_Close(upstream),
        )

    async def _send(self, request: Request, body: bytes, path: str | None = None) -> httpx.Response:
        """Forward as received; `path` replaces the request's path (an aliased zone)."""
        assert self._client is not None
        raw_path = request.scope.get("raw_path") or request.url.path.encode()
        target = path if path is not None else raw_path.decode("latin-1")
        if request.scope.get("query_string"):
            target += "?" + request.scope["query_string"].decode("latin-1")
        headers = [(k, v) for k, v in request.headers.items() if k.lower() not in _HOP]
        outgoing = self._client.build_request(
            request.method, httpx.URL(self.upstream + target), headers=headers, content=body
        )
        return await self._client.send(outgoing, stream=True)

    async def _buffered(
        self, request: Request, body: bytes, path: str | None = None
    ) -> tuple[httpx.Response, bytes]:
        upstream = await self._send(request, body, path)
        try:
            return upstream, await upstream.aread()
        finally:
            await upstream.aclose()

    # ------------------------------------------------------------------ Route53
    async def _route53(self, request: Request, body: bytes) -> Response:
        if self.board.take_route53_throttle():
            with self._lock:
                self.log.throttled += 1
            return _route53_error(400, "Throttling", "Rate exceeded")
        parts = request.url.path[len(ROUTE53_PREFIX) :].strip("/").split("/")
        if self.board.now.route53_control_plane_down and _control_plane_call(request.method, parts):
            with self._lock:
                self.log.control_plane_refused += 1
            return _route53_error(503, "ServiceUnavailable", "Service Unavailable", sender=False)
        alias = parts[1] if len(parts) >= 2 and parts[0] == "hostedzone" else None
        with self._lock:
            zone = self._zone_aliases.get(alias or "")
        if alias and zone:
            return await self._aliased(request, body, parts, alias, zone)
        if (
            request.method == "POST"
            and len(parts) == 3
            and parts[0] == "hostedzone"
            and parts[2] == "rrset"
        ):
            return await self._change_rrsets(request, body, parts[1])
        if request.method == "GET" and len(parts) == 2 and parts[0] == "change":
            known = self.change(parts[1])
            if known is None:
                # moto answers INSYNC for any id; Route53 knows only the changes it made.
                return _route53_error(
                    404, "NoSuchChange", "A change with the specified change ID does not exist."
                )
            return _change_info("GetChangeResponse", known)
        if request.method in ("POST", "DELETE") and parts[0] == "hostedzone":
            # Creating / deleting a zone is a change too: remember its id (already INSYNC).
            upstream, content = await self._buffered(request, body)
            match = _CHANGE_ID.search(content)
            if upstream.status_code < 300 and match:
                self._remember(match.group(1).decode(), zone_id=parts[-1] if len(parts) > 1 else "")
            return Response(content, upstream.status_code, headers=_plain(upstream.headers))
        return await self._forward(request, body)

    async def _aliased(
        self, request: Request, body: bytes, parts: list[str], alias: str, zone: str
    ) -> Response:
        """A request for a runbook's pinned zone id, served by moto's zone of that name."""
        path = ROUTE53_PREFIX + "/".join(["hostedzone", zone, *parts[2:]])
        if request.method == "POST" and parts[2:] == ["rrset"]:
            return await self._change_rrsets(request, body, alias, path)
        upstream, content = await self._buffered(request, body, path)
        content = content.replace(f"/hostedzone/{zone}<".encode(), f"/hostedzone/{alias}<".encode())
        return Response(content, upstream.status_code, headers=_plain(upstream.headers))

    def _remember(self, change_id: str, zone_id: str) -> None:
        record = Route53Change(change_id, zone_id, datetime.now(UTC), time.monotonic(), 0)
        with self._lock:
            self._changes[change_id] = record

    async def _change_rrsets(
        self, request: Request, body: bytes, zone_id: str, path: str | None = None
    ) -> Response:
        try:
            batch = ET.fromstring(body)
        except ET.ParseError:
            return _route53_error(400, "InvalidInput", "Could not parse the change batch XML")
        changes = batch.findall(f".//{{{ROUTE53_NS}}}Change")
        for index, change in enumerate(changes, start=1):
            weight = change.findtext(f"{{{ROUTE53_NS}}}ResourceRecordSet/{{{ROUTE53_NS}}}Weight")
            # moto does not check the bounds Route53 enforces.
            if weight is not None and not (weight.isdigit() and int(weight) <= 255):
                return _route53_error(
                    400,
                    "InvalidInput",
                    f"1 validation error detected: Value '{weight}' at "
                    f"'changeBatch.changes.{index}.member.resourceRecordSet.weight' failed to "
                    "satisfy constraint: Member must have value less than or equal to 255",
                )
        upstream, content = await self._buffered(request, body, path)
        if upstream.status_code != 200:
            return Response(content, upstream.status_code, headers=_plain(upstream.headers))
        now = time.monotonic()
        record = Route53Change(
            id="C" + "".join(secrets.choice(_ID_CHARS) for _ in range(20)),
            zone_id=zone_id,
            submitted_at=datetime.now(UTC),
            insync_at=now + self.board.now.route53_pending_seconds / self.speed,
            changes=len(changes),
            comment=batch.findtext(f".//{{{ROUTE53_NS}}}Comment"),
        )
        with self._lock:
            self._changes[record.id] = record
            self.log.route53_changes.append(record)
        # Route53 always answers a new change PENDING; GetChange says when it is INSYNC.
        return _change_info("ChangeResourceRecordSetsResponse", record, status="PENDING")

    # ------------------------------------------------------------------ S3 / Glacier
    async def _s3(self, request: Request, body: bytes) -> Response:
        bucket, key = _bucket_key(request)
        if not key:
            return await self._forward(request, body)
        query = dict(parse_qsl(request.url.query, keep_blank_values=True))
        method = request.method
        if method == "POST" and "restore" in query:
            return await self._restore(request, body, bucket, key)
        copy_source = request.headers.get("x-amz-copy-source")
        if method == "PUT" and copy_source:
            src_bucket, _, src_key = (
                unquote(copy_source.split("?", 1)[0]).lstrip("/").partition("/")
            )
            if self._ongoing(src_bucket, src_key):
                return _s3_error(
                    403,
                    "InvalidObjectState",
                    "The source object of the COPY action is not in the active tier and is "
                    "only stored in Amazon S3 Glacier.",
                )
        if not self._ongoing(bucket, key) or _is_subresource(query):
            return await self._forward(request, body)
        if method == "HEAD":
            upstream, _ = await self._buffered(request, body)
            headers = _plain(upstream.headers)
            if upstream.status_code == 200:
                headers["x-amz-restore"] = 'ongoing-request="true"'
            if "content-length" in upstream.headers:
                headers["content-length"] = upstream.headers["content-length"]
            return Response(b"", upstream.status_code, headers=headers)
        if method == "GET":
            upstream, content = await self._buffered(request, b"")
            if upstream.status_code == 200:
                storage_class = upstream.headers.get("x-amz-storage-class", "GLACIER")
                return _s3_error(
                    403,
                    "InvalidObjectState",
                    "The operation is not valid for the object's storage class",
                    extra={"StorageClass": storage_class},
                )
            return Response(content, upstream.status_code, headers=_plain(upstream.headers))
        return await self._forward(request, body)

    async def _restore(self, request: Request, body: bytes, bucket: str, key: str) -> Response:
        with self._lock:
            self.log.restore_requests[(bucket, key)] += 1
        if self._ongoing(bucket, key):
            return _s3_error(
                409, "RestoreAlreadyInProgress", "Object restore is already in progress"
            )
        upstream, content = await self._buffered(request, body)
        delay = self.board.now.glacier_delay_seconds / self.speed
        # moto answers 202 when it starts a restore and 200 when the object is already
        # restored (then real S3 only extends the expiry: no new wait).
        if upstream.status_code == 202 and delay > 0:
            now = time.monotonic()
            with self._lock:
                self._restores[(bucket, key)] = GlacierRestore(bucket, key, now, now + delay)
        return Response(content, upstream.status_code, headers=_plain(upstream.headers))

    def _ongoing(self, bucket: str, key: str) -> bool:
        with self._lock:
            restore = self._restores.get((bucket, key))
        return restore is not None and restore.ongoing()


# ---------------------------------------------------------------------- helpers


class _Close:
    """Background task closing the upstream response once its body is relayed."""

    def __init__(self, upstream: httpx.Response):
        self._upstream = upstream

    async def __call__(self) -> None:
        with contextlib.suppress(Exception):
            await self._upstream.aclose()


def _service(request: Request) -> str:
    """Which AWS service a request is for: the SigV4 credential scope says it."""
    auth = request.headers.get("authorization", "") or request.query_params.get(
        "X-Amz-Credential", ""
    )
    for service in ("route53", "ecr", "servicequotas", "rds", "monitoring"):
        if f"/{service}/aws4_request" in auth:
            return service
    if "/s3/aws4_request" in auth:
        return "s3"
    return "route53" if request.url.path.startswith(ROUTE53_PREFIX) else "s3"


def _region(request: Request) -> str:
    """The region a request is signed for (SigV4 scope: KEY/DATE/REGION/SERVICE/aws4_request)."""
    auth = request.headers.get("authorization", "") or request.query_params.get("X-Amz-Credential", "")
    m = re.search(r"Credential=[^/]+/\d{8}/([^/]+)/", auth) or re.search(r"^[^/]+/\d{8}/([^/]+)/", auth)
    return m.group(1) if m else "us-east-1"


def _json_error(status: int, code: str, message: str) -> Response:
    """An error as AWS JSON 1.1 protocols send it (ECR, Service Quotas)."""
    return Response(json.dumps({"__type": code, "message": message}), status_code=status,
                    media_type="application/x-amz-json-1.1", headers={"x-amzn-requestid": _request_id()})


def _bucket_key(request: Request) -> tuple[str, str]:
    raw = (request.scope.get("raw_path") or request.url.path.encode()).decode("latin-1")
    host = request.headers.get("host", "").split(":", 1)[0]
    # Virtual-hosted style (bucket.localhost) when the host is a name with a bucket label.
    if host.count(".") >= 1 and not host.replace(".", "").isdigit():
        return host.split(".", 1)[0], unquote(raw.lstrip("/"))
    bucket, _, key = raw.lstrip("/").partition("/")
    return unquote(bucket), unquote(key)


def _is_subresource(query: dict[str, str]) -> bool:
    """True for ?tagging, ?acl ... : those read metadata, which Glacier does not block."""
    plain = {"versionId", "partNumber", "x-id"}
    return any(k not in plain and not k.startswith(("response-", "X-Amz-")) for k in query)


def _plain(headers: httpx.Headers) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k.lower() not in _HOP}


def _request_id() -> str:
    return uuid.uuid4().hex.upper()[:16]


def _control_plane_call(method: str, parts: list[str]) -> bool:
    """ChangeResourceRecordSets (POST hostedzone/ID/rrset) or GetChange (GET change/ID)."""
    change = method == "POST" and len(parts) == 3 and parts[0] == "hostedzone" and parts[2] == "rrset"
    return change or (method == "GET" and len(parts) == 2 and parts[0] == "change")


RDS_NS = "http://rds.amazonaws.com/doc/2014-10-31/"


def _rds_error(status: int, code: str, message: str, sender: bool = True) -> Response:
    request_id = str(uuid.uuid4())
    body = (
        f'<ErrorResponse xmlns="{RDS_NS}"><Error><Type>{"Sender" if sender else "Receiver"}</Type>'
        f"<Code>{code}</Code><Message>{escape(message)}</Message></Error>"
        f"<RequestId>{request_id}</RequestId></ErrorResponse>"
    )
    return Response(body, status, media_type="text/xml", headers={"x-amzn-RequestId": request_id})


def _global_cluster_xml(describe: bytes, identifier: str) -> bytes | None:
    """Global cluster `identifier` of a DescribeGlobalClusters answer, as `<GlobalCluster>` XML
    without namespace; None when the answer does not hold it."""
    root = ET.fromstring(describe)
    found = next((e for e in root.iter() if e.tag.endswith("}GlobalClusters") or e.tag == "GlobalClusters"), None)
    cluster = next((c for c in (found if found is not None else []) if any(
        e.tag.endswith("GlobalClusterIdentifier") and (e.text or "").lower() == identifier.lower() for e in c)), None)
    if cluster is None:
        return None
    for element in cluster.iter():
        element.tag = element.tag.rsplit("}", 1)[-1]
    cluster.tag = "GlobalCluster"
    return ET.tostring(cluster)


def _rds_answer(action: str, result: bytes) -> bytes:
    """An RDS query-protocol answer: `ACTIONResponse` / `ACTIONResult` around `result`."""
    return (
        f'<{action}Response xmlns="{RDS_NS}"><{action}Result>'.encode() + result
        + f"</{action}Result><ResponseMetadata><RequestId>{uuid.uuid4()}</RequestId></ResponseMetadata>"
        f"</{action}Response>".encode()
    )


def _route53_error(status: int, code: str, message: str, sender: bool = True) -> Response:
    request_id = str(uuid.uuid4())
    body = (
        '<?xml version="1.0"?>\n'
        f'<ErrorResponse xmlns="{ROUTE53_NS}"><Error><Type>{"Sender" if sender else "Receiver"}</Type>'
        f"<Code>{code}</Code><Message>{escape(message)}</Message></Error>"
        f"<RequestId>{request_id}</RequestId></ErrorResponse>"
    )
    return Response(body, status, media_type="text/xml", headers={"x-amzn-RequestId": request_id})


def _change_info(root: str, change: Route53Change, status: str | None = None) -> Response:
    submitted = (
        change.submitted_at.strftime("%Y-%m-%dT%H:%M:%S.")
        + f"{change.submitted_at.microsecond // 1000:03d}Z"
    )
    comment = f"<Comment>{escape(change.comment)}</Comment>" if change.comment else ""
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<{root} xmlns="{ROUTE53_NS}"><ChangeInfo><Id>/change/{change.id}</Id>'
        f"<Status>{status or change.status()}</Status><SubmittedAt>{submitted}</SubmittedAt>"
        f"{comment}</ChangeInfo></{root}>"
    )
    return Response(
        body, 200, media_type="text/xml", headers={"x-amzn-RequestId": str(uuid.uuid4())}
    )


def _s3_error(
    status: int, code: str, message: str, extra: dict[str, str] | None = None
) -> Response:
    request_id = _request_id()
    fields = "".join(f"<{k}>{escape(v)}</{k}>" for k, v in (extra or {}).items())
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{escape(message)}</Message>{fields}"
        f"<RequestId>{request_id}</RequestId><HostId>{secrets.token_hex(16)}</HostId></Error>"
    )
    return Response(
        body, status, media_type="application/xml", headers={"x-amz-request-id": request_id}
    )

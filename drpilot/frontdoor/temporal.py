"""Connecting to Temporal from settings, with one clear sentence when it is not there."""

from __future__ import annotations

from pathlib import Path

from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest
from temporalio.client import Client, TLSConfig
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.runtime import Runtime
from temporalio.service import RPCError, RPCStatusCode

from drpilot.domain.settings import TemporalSettings


class TemporalUnavailable(RuntimeError):
    """Temporal cannot be reached; the message says where we looked and how to start one."""


def tls_config(settings: TemporalSettings) -> TLSConfig | bool:
    """The client's TLS: False (plaintext dev server), True (system roots: Temporal Cloud
    with an API key), or a TLSConfig from PEM files (mTLS, or a private CA). A certificate
    or CA file means TLS even without DRPILOT_TEMPORAL_TLS, rather than dropping it."""
    if not (settings.tls or settings.tls_cert or settings.tls_ca):
        return False
    if bool(settings.tls_cert) != bool(settings.tls_key):
        raise TemporalUnavailable(
            "mTLS needs both DRPILOT_TEMPORAL_TLS_CERT and DRPILOT_TEMPORAL_TLS_KEY (a client "
            "certificate and its private key); set both, or neither"
        )
    read = lambda path: Path(path).read_bytes() if path else None  # noqa: E731
    if settings.tls_cert or settings.tls_ca:
        return TLSConfig(
            client_cert=read(settings.tls_cert),
            client_private_key=read(settings.tls_key),
            server_root_ca_cert=read(settings.tls_ca),
        )
    return True


async def connect(settings: TemporalSettings, *, runtime: Runtime | None = None) -> Client:
    """`runtime`: the worker's, whose telemetry exports metrics; None is the SDK default."""
    try:
        client = await Client.connect(
            settings.address,
            runtime=runtime,
            namespace=settings.namespace,
            tls=tls_config(settings),
            api_key=settings.api_key,
            data_converter=pydantic_data_converter,
        )
    except TemporalUnavailable:
        raise
    except OSError as exc:  # unreadable TLS files
        raise TemporalUnavailable(f"cannot read a Temporal TLS file: {exc}") from None
    except RuntimeError as exc:
        raise TemporalUnavailable(
            f"cannot reach Temporal at {settings.address} (namespace {settings.namespace}): "
            f"{_reason(exc)}. Start one with `drpilot sandbox up --runbook FILE` "
            "(then `source DIR/env`) or `temporal server start-dev`, or set DRPILOT_TEMPORAL_ADDRESS."
        ) from None
    # Connecting checks only the frontend; a missing namespace or a credential without
    # rights on it would otherwise surface as a raw RPCError at the first real call.
    try:
        await client.workflow_service.describe_namespace(DescribeNamespaceRequest(namespace=settings.namespace))
    except RPCError as exc:
        raise TemporalUnavailable(rpc_problem(exc, settings.address, settings.namespace)) from None
    return client


def rpc_problem(exc: RPCError, address: str | None = None, namespace: str | None = None) -> str:
    """One sentence for a Temporal RPC refusal, with the fix for the common ones."""
    where = f"Temporal at {address}" if address else "Temporal"
    ns = f"namespace {namespace!r}" if namespace else "the namespace"
    if exc.status == RPCStatusCode.NOT_FOUND and "amespace" in exc.message:
        return (
            f"{ns} not found at {where}: create it (`temporal operator namespace create "
            f"--namespace {namespace or 'NAME'}`) or set DRPILOT_TEMPORAL_NAMESPACE to one that exists"
        )
    if exc.status == RPCStatusCode.PERMISSION_DENIED:
        return (
            f"permission denied by {where} for {ns}: {exc.message}. Give drpilot's API key "
            "(DRPILOT_TEMPORAL_API_KEY) or client certificate (DRPILOT_TEMPORAL_TLS_CERT) "
            "access to it"
        )
    if exc.status == RPCStatusCode.UNAUTHENTICATED:
        return (
            f"{where} did not accept drpilot's credentials: {exc.message}. Check "
            "DRPILOT_TEMPORAL_API_KEY or DRPILOT_TEMPORAL_TLS_CERT / DRPILOT_TEMPORAL_TLS_KEY"
        )
    return f"{where} refused the request ({exc.status.name}): {exc.message}"


def _reason(exc: Exception) -> str:
    """The part of the Rust core's connection error a person needs."""
    text = str(exc)
    for needle, reason in (
        ("ConnectionRefused", "connection refused"),
        ("dns error", "host name not found"),
        ("timed out", "timed out"),
        ("Namespace", "namespace not found"),
        ("certificate", "TLS certificate problem"),
    ):
        if needle in text:
            return reason
    first = text.splitlines()[0] if text else type(exc).__name__
    return first if len(first) <= 160 else first[:157] + "..."

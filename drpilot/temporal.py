"""Connecting to Temporal from settings, with one clear sentence when it is not there."""

from __future__ import annotations

from pathlib import Path

from temporalio.client import Client, TLSConfig
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.runtime import Runtime

from drpilot.settings import TemporalSettings


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
        return await Client.connect(
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

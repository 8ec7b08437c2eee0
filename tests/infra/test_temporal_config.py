"""The Temporal client config drpilot builds for a self-hosted cluster or Temporal Cloud:
plaintext for a dev server, TLS with system roots for an API key, mTLS / private CA from
PEM files; mistakes are one sentence naming the setting."""

from __future__ import annotations

import pytest
from temporalio.client import TLSConfig

from drpilot.domain.settings import load_settings
from drpilot.frontdoor.temporal import TemporalUnavailable, connect, tls_config


def temporal(env: dict[str, str]):
    return load_settings(env).temporal


def test_dev_server_is_plaintext():
    assert tls_config(temporal({})) is False


def test_api_key_implies_tls_with_system_roots():
    settings = temporal({"DRPILOT_TEMPORAL_ADDRESS": "ns.acct.tmprl.cloud:7233", "DRPILOT_TEMPORAL_API_KEY": "s3cr3t-api-key"})
    assert settings.tls is True
    assert tls_config(settings) is True
    assert "s3cr3t" not in repr(settings)  # the key never reaches a log line


def test_mtls_reads_certificate_key_and_ca_files(tmp_path):
    files = {name: tmp_path / f"{name}.pem" for name in ("cert", "key", "ca")}
    for name, path in files.items():
        path.write_bytes(f"-----BEGIN {name.upper()}-----\n".encode())
    settings = temporal(
        {
            "DRPILOT_TEMPORAL_TLS_CERT": str(files["cert"]),
            "DRPILOT_TEMPORAL_TLS_KEY": str(files["key"]),
            "DRPILOT_TEMPORAL_TLS_CA": str(files["ca"]),
        }
    )
    # A certificate means TLS even when DRPILOT_TEMPORAL_TLS was not set.
    assert tls_config(settings) == TLSConfig(
        client_cert=b"-----BEGIN CERT-----\n",
        client_private_key=b"-----BEGIN KEY-----\n",
        server_root_ca_cert=b"-----BEGIN CA-----\n",
    )


def test_private_ca_without_client_certificate(tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_bytes(b"CA")
    assert tls_config(temporal({"DRPILOT_TEMPORAL_TLS_CA": str(ca)})) == TLSConfig(server_root_ca_cert=b"CA")


def test_certificate_without_key_is_named(tmp_path):
    cert = tmp_path / "cert.pem"
    cert.write_bytes(b"C")
    with pytest.raises(TemporalUnavailable, match="^mTLS needs both DRPILOT_TEMPORAL_TLS_CERT and DRPILOT_TEMPORAL_TLS_KEY"):
        tls_config(temporal({"DRPILOT_TEMPORAL_TLS_CERT": str(cert)}))


async def test_unreadable_tls_file_is_one_sentence(tmp_path):
    settings = temporal({"DRPILOT_TEMPORAL_TLS_CA": str(tmp_path / "missing.pem")})
    with pytest.raises(TemporalUnavailable) as caught:
        await connect(settings)
    assert str(caught.value).startswith("cannot read a Temporal TLS file: [Errno 2] No such file or directory")

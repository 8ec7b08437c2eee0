"""How drpilot reaches Temporal and the providers: environment variables, read in one place.

Provider SDKs keep their own conventions (AWS_* for boto3, KUBECONFIG for kubernetes,
GOOGLE_APPLICATION_CREDENTIALS for Cloud DNS); only what they lack is a DRPILOT_* variable.
The sandbox's `DIR/env` sets all of them, which is how `source DIR/env` points every
drpilot command at the twin without touching the runbook.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field


class SettingsError(ValueError):
    """An environment variable holds something drpilot cannot use; the text says which."""


@dataclass(frozen=True)
class TemporalSettings:
    # host:port of the Temporal frontend. Default: a local dev server (`temporal server start-dev`).
    address: str = "127.0.0.1:7233"
    namespace: str = "default"
    # Task queue the worker polls and every run is started on.
    task_queue: str = "drpilot"
    # TLS to the frontend: required for Temporal Cloud; off for a local dev server.
    tls: bool = False
    tls_cert: str | None = None  # path to the client certificate (mTLS), PEM
    tls_key: str | None = None  # path to its private key, PEM
    tls_ca: str | None = None  # path to a CA bundle when the server's CA is private
    # Temporal Cloud API key; implies TLS.
    api_key: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class ProviderSettings:
    # Cloud DNS API root; None means Google's public endpoint. The sandbox sets its emulator.
    clouddns_endpoint: str | None = None
    # Cloud Storage API root (gs:// artifacts); None means Google's public endpoint. The
    # sandbox sets its emulator.
    gcs_endpoint: str | None = None
    # Runbook endpoint URL -> URL actually dialled. Empty in production (probes go to the
    # runbook's endpoints); the sandbox maps each region's endpoint to a loopback port.
    endpoint_map: Mapping[str, str] = field(default_factory=dict)
    # Route 53 ARC cluster endpoint (as the runbook names it) -> URL actually dialled. Empty
    # in production; the sandbox maps each to one of its five loopback endpoints.
    arc_endpoint_map: Mapping[str, str] = field(default_factory=dict)
    # Origin (scheme://host[:port]) of an http block's URL -> the origin actually dialled.
    # Empty in production; the sandbox maps each to its HTTP receiver.
    http_map: Mapping[str, str] = field(default_factory=dict)
    # Prometheus URL rewrites, same idea as endpoint_map.
    prometheus_map: Mapping[str, str] = field(default_factory=dict)
    # Alertmanager drills read blocking alerts from, instead of the runbook's
    # spec.drills.alertmanager; the sandbox sets its own.
    alertmanager_url: str | None = None


@dataclass(frozen=True)
class Settings:
    temporal: TemporalSettings = field(default_factory=TemporalSettings)
    providers: ProviderSettings = field(default_factory=ProviderSettings)
    # Rehearsal speed: every wait the engine makes (bake, TTL, timeouts) is divided by it.
    # 1 in production; the sandbox sets e.g. 60 so a 75-minute failback rehearses in ~1 min.
    speed: float = 1.0
    # True when the environment points at a sandbox twin (its DIR/env sets DRPILOT_SANDBOX=1):
    # the only place a speed above 1 is allowed.
    sandbox: bool = False
    # Where the Alertmanager webhook listens. Loopback by default; production sets it.
    webhook_listen: str = "127.0.0.1:8787"
    # Bearer token the webhook requires (Alertmanager http_config.authorization); None = none.
    webhook_token: str | None = field(default=None, repr=False)
    # Where the worker serves /healthz, /readyz and /metrics. Loopback on a free port by
    # default (several local workers, as the sandbox and tests start, never collide; the
    # worker logs the port); a pod sets 0.0.0.0:8788 for the kubelet's probes and Prometheus.
    health_listen: str = "127.0.0.1:0"


def _bool(name: str, raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise SettingsError(f"{name}={raw!r}: expected true or false")


def _map(name: str, raw: str | None) -> dict[str, str]:
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise SettingsError(f"{name}: expected a JSON object of URL -> URL ({exc.msg})") from None
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise SettingsError(f"{name}: expected a JSON object of URL -> URL")
    return value


SANDBOX_MARK = "DRPILOT_SANDBOX"


def check_speed(speed: float, sandbox: bool, given_as: str) -> None:
    """A speed above 1 shortens real bakes, TTL waits and gates: refuse it unless drpilot
    points at a sandbox. `given_as` names where the speed came from, for the message."""
    if speed > 1 and not sandbox:
        unset = "unset DRPILOT_SPEED" if given_as.startswith("DRPILOT_SPEED") else "drop --speed"
        raise SettingsError(
            f"{given_as}: a speed above 1 shortens every bake, TTL wait and health gate, so it is "
            f"only for a sandbox ({SANDBOX_MARK}=1, set by `source DIR/env` of `drpilot sandbox up`), "
            f"and {SANDBOX_MARK} is not set; {unset} to run at real time"
        )

def split_listen(name: str, value: str) -> tuple[str, int]:
    """HOST:PORT of a listen setting ([v6]:port allowed), or a SettingsError naming it."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise SettingsError(f"{name}={value!r}: expected HOST:PORT, e.g. 127.0.0.1:8788")
    return host.strip("[]"), int(port)


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if env is None else env
    get = env.get
    raw_speed = get("DRPILOT_SPEED", "1")
    try:
        speed = float(raw_speed)
    except ValueError:
        raise SettingsError(f"DRPILOT_SPEED={raw_speed!r}: expected a number >= 1") from None
    if not speed >= 1:  # also NaN
        raise SettingsError(f"DRPILOT_SPEED={raw_speed!r}: expected a number >= 1")
    sandbox = _bool(SANDBOX_MARK, get(SANDBOX_MARK, ""))
    check_speed(speed, sandbox, f"DRPILOT_SPEED={raw_speed!r}")
    api_key = get("DRPILOT_TEMPORAL_API_KEY") or None
    health_listen = get("DRPILOT_HEALTH_LISTEN", Settings.health_listen)
    split_listen("DRPILOT_HEALTH_LISTEN", health_listen)
    return Settings(
        temporal=TemporalSettings(
            address=get("DRPILOT_TEMPORAL_ADDRESS", TemporalSettings.address),
            namespace=get("DRPILOT_TEMPORAL_NAMESPACE", TemporalSettings.namespace),
            task_queue=get("DRPILOT_TASK_QUEUE", TemporalSettings.task_queue),
            tls=_bool("DRPILOT_TEMPORAL_TLS", get("DRPILOT_TEMPORAL_TLS", "")) or api_key is not None,
            tls_cert=get("DRPILOT_TEMPORAL_TLS_CERT") or None,
            tls_key=get("DRPILOT_TEMPORAL_TLS_KEY") or None,
            tls_ca=get("DRPILOT_TEMPORAL_TLS_CA") or None,
            api_key=api_key,
        ),
        providers=ProviderSettings(
            clouddns_endpoint=get("DRPILOT_CLOUDDNS_ENDPOINT") or None,
            gcs_endpoint=get("DRPILOT_GCS_ENDPOINT") or None,
            endpoint_map=_map("DRPILOT_ENDPOINT_MAP", get("DRPILOT_ENDPOINT_MAP")),
            prometheus_map=_map("DRPILOT_PROMETHEUS_MAP", get("DRPILOT_PROMETHEUS_MAP")),
            arc_endpoint_map=_map("DRPILOT_ARC_ENDPOINT_MAP", get("DRPILOT_ARC_ENDPOINT_MAP")),
            http_map=_map("DRPILOT_HTTP_MAP", get("DRPILOT_HTTP_MAP")),
            alertmanager_url=get("DRPILOT_ALERTMANAGER_URL") or None,
        ),
        speed=speed,
        sandbox=sandbox,
        webhook_listen=get("DRPILOT_WEBHOOK_LISTEN", Settings.webhook_listen),
        webhook_token=get("DRPILOT_WEBHOOK_TOKEN") or None,
        health_listen=health_listen,
    )

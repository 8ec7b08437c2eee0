"""A container image's manifest in a registry other than ECR, checked as a pull would find it.

The OCI distribution spec: `HEAD /v2/<name>/manifests/<reference>` answers 200 when the
manifest exists and 404 when it does not (MANIFEST_UNKNOWN), without its body. Registries
that want credentials answer 401 with a `WWW-Authenticate` challenge: `Basic` (send the pull
secret's user and password) or `Bearer realm=...,service=...` (Docker's token protocol, used
by Docker Hub, GHCR, nvcr.io, Quay: fetch a token for `repository:<name>:pull` from the realm
with those credentials, then ask again with it). The credentials are those of the Deployment's
imagePullSecrets (kubernetes.io/dockerconfigjson), as the kubelet would send them. Each call is
bounded; a registry that does not answer is "not checked".
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass
from typing import Any

import httpx

TIMEOUT_SECONDS = 5.0
ACCEPT = ", ".join((
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
))
_CHALLENGE = re.compile(r'(\w+)="([^"]*)"')


@dataclass(frozen=True)
class Reference:
    registry: str  # host[:port] as the image names it (docker.io when it names none)
    repository: str
    reference: str  # tag or digest

    @property
    def base(self) -> str:
        host = "registry-1.docker.io" if self.registry == "docker.io" else self.registry
        # Docker and containerd talk plain HTTP to a loopback registry; TLS to any other.
        loopback = host.split(":")[0] in ("localhost", "127.0.0.1") or host.startswith("[::1]")
        return f"{'http' if loopback else 'https'}://{host}"


def parse(image: str) -> Reference:
    """`nvcr.io/nvidia/tritonserver:24.05-py3`, `vllm/vllm-openai@sha256:...`, `busybox`."""
    name, _, digest = image.partition("@")
    first, _, rest = name.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        registry, path = first, rest
    else:
        registry, path = "docker.io", name if rest else f"library/{name}"
    path, sep, tag = path.rpartition(":") if ":" in path.rsplit("/", 1)[-1] else (path, "", "")
    return Reference(registry, path, digest or (tag if sep else "latest"))


def credentials(secrets: list[dict[str, Any]], registry: str) -> tuple[str, str] | None:
    """User and password for `registry` in the first dockerconfigjson secret naming it."""
    keys = {registry, f"https://{registry}", f"http://{registry}"}
    if registry == "docker.io":
        keys |= {"https://index.docker.io/v1/", "index.docker.io"}
    for secret in secrets:
        raw = (secret.get("data") or {}).get(".dockerconfigjson")
        if not raw:
            continue
        try:
            auths = json.loads(base64.b64decode(raw)).get("auths") or {}
        except ValueError:
            continue
        for key, entry in auths.items():
            if key.rstrip("/") in {k.rstrip("/") for k in keys} and isinstance(entry, dict):
                if entry.get("username") is not None:
                    return str(entry["username"]), str(entry.get("password", ""))
                if entry.get("auth"):
                    user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
                    return user, password
    return None


def manifest_problem(http: httpx.Client, ref: Reference, auth: tuple[str, str]) -> str:
    """'' when the manifest is there; else what a pull would meet: "not in REGISTRY ...",
    "REGISTRY refuses the pull secret ...", or "not checked (...)" when it did not answer."""
    url = f"{ref.base}/v2/{ref.repository}/manifests/{ref.reference}"
    try:
        response = http.head(url, headers={"Accept": ACCEPT}, timeout=TIMEOUT_SECONDS)
        challenge = response.headers.get("WWW-Authenticate", "")
        if response.status_code == 401 and challenge.lower().startswith("bearer"):
            token = _token(http, challenge, ref, auth)
            response = http.head(url, headers={"Accept": ACCEPT, "Authorization": f"Bearer {token}"}, timeout=TIMEOUT_SECONDS)
        elif response.status_code == 401:
            response = http.head(url, headers={"Accept": ACCEPT}, auth=auth, timeout=TIMEOUT_SECONDS)
    except _Refused as exc:
        return f"{ref.registry} refuses the pull secret's credentials ({exc}): pulls would fail"
    except (httpx.HTTPError, ValueError) as exc:  # no answer, or not the token protocol's
        return f"not checked ({ref.registry} did not answer as a registry: {type(exc).__name__})"
    if response.status_code == 200:
        return ""
    if response.status_code == 404:
        return f"not in {ref.registry} (manifest HEAD: 404)"
    if response.status_code in (401, 403):
        return f"{ref.registry} refuses the pull secret's credentials ({response.status_code}): pulls would fail"
    return f"not checked ({ref.registry} answered {response.status_code})"


class _Refused(Exception):
    """The token endpoint refused the credentials."""


def _token(http: httpx.Client, challenge: str, ref: Reference, auth: tuple[str, str]) -> str:
    params = dict(_CHALLENGE.findall(challenge))
    realm = params.pop("realm", "")
    query = {"service": params.get("service", ""), "scope": f"repository:{ref.repository}:pull"}
    answer = http.get(realm, params=query, auth=auth, timeout=TIMEOUT_SECONDS)
    if answer.status_code in (401, 403):
        raise _Refused(f"token {answer.status_code}")
    answer.raise_for_status()
    body = answer.json()
    return str(body.get("token") or body.get("access_token") or "")

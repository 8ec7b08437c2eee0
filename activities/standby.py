"""What a standby region needs from AWS to come up: its images in a registry it can reach,
and the vCPU quota for the GPU nodes its scale-out would start.

Images: every container image the region's Deployments run. An ECR image must be in the
registry of the region it is pulled from (ECR DescribeImages there), and that registry must
be the region's own: an image pulled from another region's registry fails exactly when that
region is down. An image outside ECR is asked of its own registry (a manifest HEAD, bounded,
activities/image_registry.py) with the Deployment's pull secret for it; without one, or when the
registry does not answer, it is "not checked", said as such and noted, never a finding. A
tag, not a digest, is noted: what a tag names can change between the drill and the outage.

Quota: EC2 counts On-Demand instances against per-family vCPU quotas ("Running On-Demand G
and VT instances", "Running On-Demand P instances"; Service Quotas, ServiceCode ec2). The
nodes the capacity check says the scale-out would start must fit under the quota minus the
vCPUs of the region's running nodes; nodes the account may not start are not headroom. A
quota that cannot be read (no permission, no such quota) is "not checked", never "ok".
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Mapping
from typing import Any, Self

import httpx
from botocore.exceptions import BotoCoreError, ClientError
from kubernetes import client as k8s
from temporalio import activity

from activities import contracts, image_registry
from activities.contracts import ImagesInput, ImagesResult, QuotaInput, QuotaResult
from activities.credentials import aws_config, regional_clients
from activities.kube.clusters import (
    REQUEST_TIMEOUT,
    KubeconfigClients,
    api_errors,
    classify,
    cluster_client,
)
from drpilot.domain.settings import Settings

ECR_IMAGE = re.compile(
    r"^(?P<account>\d{12})\.dkr\.ecr\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(?:\.cn)?/(?P<repo>[^:@]+)"
    r"(?::(?P<tag>[^@]+))?(?:@(?P<digest>sha256:[0-9a-f]{64}))?$"
)
# EC2 instance family (the letters before the generation digit) -> its On-Demand vCPU quota.
QUOTA_CODES = {
    "g": ("L-DB2E81BA", "Running On-Demand G and VT instances"),
    "vt": ("L-DB2E81BA", "Running On-Demand G and VT instances"),
    "p": ("L-417A185B", "Running On-Demand P instances"),
}


class StandbyActivities:
    """Images and quotas of a region: a Kubernetes client per context, an AWS client per
    (service, region)."""

    def __init__(self, clients: Mapping[str, k8s.ApiClient], aws: Callable[[str, str], Any], http: httpx.Client | None = None):
        self.clients, self.aws = clients, aws
        self.http = http or httpx.Client(timeout=image_registry.TIMEOUT_SECONDS)

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        return cls(KubeconfigClients(os.environ.get("KUBECONFIG")), regional_clients(aws_config(read_timeout=20, attempts=3)))

    def all(self) -> list[Callable[..., Any]]:
        return [self.images, self.quota]

    # ------------------------------------------------------------------ images
    @activity.defn(name=contracts.IMAGES_CHECK)
    def images(self, input: ImagesInput) -> ImagesResult:
        context, api = cluster_client(self.clients, input.runbook, input.region, "read the workloads' images")
        apps = k8s.AppsV1Api(api)
        images: list[str] = []
        secrets_of: dict[str, tuple[str, list[str]]] = {}  # image -> (namespace, its pull secrets' names)
        for w in input.runbook.workloads_in(input.region):
            try:
                response = apps.read_namespaced_deployment(
                    w.deployment, w.namespace, _preload_content=False, _request_timeout=REQUEST_TIMEOUT
                )
            except api_errors() as exc:
                raise classify(
                    exc, context=context, region=input.region, resource=f"Deployment {w.namespace}/{w.deployment}",
                    not_found_fix="create it there (or restore it with Velero)",
                    rbac=f"get on deployments (group apps) in namespace {w.namespace}",
                ) from exc
            spec = json.loads(response.data).get("spec", {}).get("template", {}).get("spec", {})
            pull_secrets = [s["name"] for s in spec.get("imagePullSecrets") or [] if s.get("name")]
            for c in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]:
                if c.get("image") and c["image"] not in images:
                    images.append(c["image"])
                    secrets_of[c["image"]] = (w.namespace, pull_secrets)
        findings, notes, unchecked = [], [], []
        for image in images:
            m = ECR_IMAGE.match(image)
            if m is None:
                problem = self._head(api, image, *secrets_of[image])
                if problem.startswith("not checked"):
                    notes.append(f"{image}: {problem}")
                elif problem:
                    findings.append(f"{image}: {problem}")
                continue
            if not m["digest"]:
                notes.append(f"{image}: not pinned by digest")
            if m["region"] != input.region:
                findings.append(f"{image} pulls from {m['region']}'s registry: fails while {m['region']} is down")
            problem = self._describe(m)
            if problem.startswith("not checked"):
                unchecked.append(f"{image}: {problem}")
            elif problem:
                findings.append(f"{image}: {problem}")
        verdict = "finding" if findings else "not checked" if unchecked else "ok"
        said = findings + unchecked + notes
        detail = "; ".join(said) if said else f"{len(images)} image(s) in {input.region}'s registry"
        if verdict == "ok" and said:
            detail = f"{len(images)} image(s) present; " + detail
        return ImagesResult(region=input.region, verdict=verdict, detail=detail, images=images)

    def _head(self, api: k8s.ApiClient, image: str, namespace: str, names: list[str]) -> str:
        """A non-ECR image's manifest, asked of its registry with the Deployment's pull secret
        for it (activities/image_registry.py); without one, not checked: nothing is sent anonymously."""
        ref = image_registry.parse(image)
        secrets, unread = [], []
        for name in names:
            try:
                secrets.append(json.loads(k8s.CoreV1Api(api).read_namespaced_secret(
                    name, namespace, _preload_content=False, _request_timeout=REQUEST_TIMEOUT
                ).data))
            except api_errors() as exc:
                unread.append(f"{namespace}/{name} ({getattr(exc, 'status', '') or type(exc).__name__})")
        auth = image_registry.credentials(secrets, ref.registry)
        if auth is None:
            why = f"cannot read pull secret {', '.join(unread)}" if unread else f"no pull secret for {ref.registry}"
            return f"not checked (not an ECR image; {why})"
        return image_registry.manifest_problem(self.http, ref, auth)

    def _describe(self, m: re.Match[str]) -> str:
        """'' when the image is in its registry, else what is wrong ("not checked ..." when unreadable)."""
        image_id = {"imageDigest": m["digest"]} if m["digest"] else {"imageTag": m["tag"] or "latest"}
        try:
            self.aws("ecr", m["region"]).describe_images(
                registryId=m["account"], repositoryName=m["repo"], imageIds=[image_id]
            )
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ("ImageNotFoundException", "RepositoryNotFoundException"):
                return f"not in {m['region']}'s registry (ECR {code})"
            return f"not checked (ECR DescribeImages: {code or exc})"
        except BotoCoreError as exc:
            return f"not checked (ECR unreachable: {exc})"
        return ""

    # ------------------------------------------------------------------ quota
    @activity.defn(name=contracts.QUOTA_CHECK)
    def quota(self, input: QuotaInput) -> QuotaResult:
        region, capacity = input.region, input.capacity
        if not capacity.scale_out:
            return QuotaResult(region=region, verdict="ok", detail="the scale-out starts no new node")
        parts, short, unchecked = [], [], []
        for family_code, kinds in _by_quota(capacity.scale_out).items():
            code, name = family_code
            try:
                answer = self.aws("service-quotas", region).get_service_quota(ServiceCode="ec2", QuotaCode=code)
                limit = int(answer["Quota"]["Value"])
            except (ClientError, BotoCoreError) as exc:
                why = exc.response.get("Error", {}).get("Code", "") if isinstance(exc, ClientError) else str(exc)
                unchecked.append(f"{name}: not checked ({why})")
                continue
            need = sum(n * v for n, v in (capacity.scale_out[k] for k in kinds))
            held = sum(v for k, v in capacity.running_vcpus.items() if _family(k) in _families(code))
            said = f"{name}: {need} vCPUs to start ({', '.join(kinds)}), {held} running, quota {limit}"
            (short if held + need > limit else parts).append(said + (f": short by {held + need - limit}" if held + need > limit else ""))
        verdict = "short" if short else "not checked" if unchecked else "ok"
        return QuotaResult(region=region, verdict=verdict, detail="; ".join(short + unchecked + parts))


def _family(instance_type: str) -> str:
    m = re.match(r"([a-z]+)\d", instance_type)
    return m.group(1) if m else ""


def _families(code: str) -> set[str]:
    return {f for f, (c, _) in QUOTA_CODES.items() if c == code}


def _by_quota(scale_out: dict[str, list[int]]) -> dict[tuple[str, str], list[str]]:
    out: dict[tuple[str, str], list[str]] = {}
    for kind in sorted(scale_out):
        quota = QUOTA_CODES.get(_family(kind))
        if quota is not None:
            out.setdefault(quota, []).append(kind)
    return out

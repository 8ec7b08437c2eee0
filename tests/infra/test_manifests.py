"""infra/ validates offline: Kubernetes manifests against the API schemas (kubernetes-validate
ships them), Prometheus rules with promtool, the Alertmanager config with amtool; and the
properties the deployment relies on hold in the rendered manifests."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from tests.support.paths import ROOT

KUBE = ROOT / "infra" / "kubernetes"
OVERLAYS = sorted(p for p in (KUBE / "overlays").iterdir() if p.is_dir())
KUSTOMIZATIONS = [*OVERLAYS, KUBE / "dr-cluster"]
K8S_VERSION = "1.32.0"  # the oldest Kubernetes these manifests promise to work on
CRDS = {"monitoring.coreos.com/v1"}  # Prometheus Operator: no schema ships for it
# drpilot/frontdoor/worker.py's graceful_shutdown_timeout; the pod must outlast it.
WORKER_GRACEFUL_SHUTDOWN_SECONDS = 30


def docs(text: str) -> list[dict]:
    return [d for d in yaml.safe_load_all(text) if d]


def render(kustomization: Path) -> list[dict]:
    # kubectl's built-in kustomize. Not every machine has kubectl; without it the plain
    # files are still validated below, and the rendering is skipped with a reason.
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl not installed: kustomize overlays not rendered")
    out = subprocess.run(
        [kubectl, "kustomize", str(kustomization)], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    return docs(out.stdout)


def validate(doc: dict, where: str) -> None:
    if doc["apiVersion"] in CRDS:
        return
    try:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        pytest.fail(f"{where}: {doc['kind']} {doc['metadata'].get('name')}: {exc.message} at {list(exc.path)}")


RESOURCE_FILES = sorted(
    p for p in KUBE.rglob("*.yaml") if p.name != "kustomization.yaml" and "overlays" not in p.parts
)


@pytest.mark.parametrize("path", RESOURCE_FILES, ids=lambda p: str(p.relative_to(KUBE)))
def test_every_resource_file_validates(path):
    for doc in docs(path.read_text()):
        validate(doc, str(path.relative_to(ROOT)))


@pytest.fixture(params=KUSTOMIZATIONS, ids=lambda p: str(p.relative_to(KUBE)))
def rendered(request) -> list[dict]:
    return render(request.param)


def test_rendered_kustomizations_validate(rendered):
    assert rendered
    for doc in rendered:
        validate(doc, "rendered")


def by_kind(rendered: list[dict], kind: str) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in rendered if d["kind"] == kind}


@pytest.mark.parametrize("overlay", OVERLAYS, ids=lambda p: p.name)
def test_control_plane_is_highly_available_and_locked_down(overlay):
    rendered = render(overlay)
    deployments = by_kind(rendered, "Deployment")
    assert set(deployments) == {"drpilot-worker", "drpilot-webhook"}
    pdbs = by_kind(rendered, "PodDisruptionBudget").values()
    for name, dep in deployments.items():
        spec, pod = dep["spec"], dep["spec"]["template"]["spec"]
        labels = spec["template"]["metadata"]["labels"]
        assert spec["replicas"] >= 2, name
        assert any(p["spec"]["minAvailable"] >= 1 and p["spec"]["selector"]["matchLabels"].items() <= labels.items() for p in pdbs), name
        assert [t["topologyKey"] for t in pod["topologySpreadConstraints"]] == ["topology.kubernetes.io/zone"]
        assert pod["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert pod["terminationGracePeriodSeconds"] > WORKER_GRACEFUL_SHUTDOWN_SECONDS
        mounts = {v["name"] for v in pod["volumes"]}
        for c in pod["containers"]:
            sc = c["securityContext"]
            assert sc["runAsNonRoot"] and sc["readOnlyRootFilesystem"], name
            assert sc["allowPrivilegeEscalation"] is False and sc["capabilities"] == {"drop": ["ALL"]}
            assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
            assert {"cpu", "memory"} <= c["resources"]["requests"].keys() and "memory" in c["resources"]["limits"]
            port = c["ports"][0]["name"]
            assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": port}
            assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": port}
            # Every file a setting points at lies under a mounted volume.
            mounted = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
            assert set(mounted.values()) <= mounts
            files = [(e["name"], e.get("value", "")) for e in c["env"]] + [("args", a) for a in c.get("args", [])]
            for setting, value in files:
                if value.startswith("/etc/"):
                    assert any(value.startswith(p + "/") for p in mounted), f"{name}: {setting} {value} is not mounted"
    worker = deployments["drpilot-worker"]["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in worker["env"]}
    assert env["DRPILOT_HEALTH_LISTEN"].endswith(":" + str(worker["ports"][0]["containerPort"]))
    assert {"GOOGLE_APPLICATION_CREDENTIALS", "KUBECONFIG", "AWS_SHARED_CREDENTIALS_FILE"} <= env.keys()
    # Ingress is limited for both components; Prometheus scrapes ports the Services name.
    policies = by_kind(rendered, "NetworkPolicy").values()
    for name in deployments:
        assert any(p["spec"]["podSelector"].get("matchLabels", {}).get("app.kubernetes.io/name") == name for p in policies)
    service_ports = {p["name"] for s in by_kind(rendered, "Service").values() for p in s["spec"]["ports"]}
    monitor = by_kind(rendered, "ServiceMonitor")["drpilot"]
    assert {e["port"] for e in monitor["spec"]["endpoints"]} <= service_ports


def test_dr_cluster_rbac_is_namespaced_but_for_one_read_only_capacity_role():
    rendered = render(KUBE / "dr-cluster")
    kinds = {d["kind"] for d in rendered}
    assert kinds == {"Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"}
    # The one cluster-scoped grant: reading nodes, the pods on them and NodePools (capacity).
    [cluster_role] = by_kind(rendered, "ClusterRole").values()
    granted = {(r, v) for rule in cluster_role["rules"] for r in rule["resources"] for v in rule["verbs"]}
    assert granted == {("nodes", "list"), ("pods", "list"), ("nodepools", "list")}
    assert [b["roleRef"]["name"] for b in by_kind(rendered, "ClusterRoleBinding").values()] == [cluster_role["metadata"]["name"]]
    roles = by_kind(rendered, "Role")
    for binding in by_kind(rendered, "RoleBinding").values():
        role = roles[binding["roleRef"]["name"]]
        assert role["metadata"]["namespace"] == binding["metadata"]["namespace"]


def tool(name: str) -> str:
    path = shutil.which(name)
    assert path, f"{name} missing: `make setup` installs it (scripts/debian-packages.sh)"
    return path


def test_prometheus_rules_check():
    out = subprocess.run([tool("promtool"), "check", "rules", str(ROOT / "infra/prometheus/rules.yaml")], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_alerts_fire_on_the_exported_series():
    # Unit tests in promtool's own format: series named as the worker exports them.
    out = subprocess.run(
        [tool("promtool"), "test", "rules", "rules_test.yaml"],
        capture_output=True, text=True, cwd=ROOT / "infra/prometheus",
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_alertmanager_config_checks_and_routes_triggers_to_drpilot():
    config = str(ROOT / "infra/alertmanager/alertmanager.yml")
    amtool = tool("amtool")
    out = subprocess.run([amtool, "check-config", config], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr

    def receivers(*labels: str) -> str:
        routed = subprocess.run([amtool, "config", "routes", "test", "--config.file", config, *labels], capture_output=True, text=True)
        return routed.stdout.strip()

    assert receivers("drpilot_runbook=llm-inference", "drpilot_action=failover", "severity=critical") == "drpilot,oncall"
    assert receivers("alertname=DrpilotRunFailed", "severity=page") == "oncall"
    webhook = yaml.safe_load(Path(config).read_text())["receivers"][0]["webhook_configs"][0]
    assert webhook["http_config"]["authorization"]["type"] == "Bearer"


def test_every_trigger_alert_is_routable_and_every_self_alert_uses_exported_metrics():
    groups = {g["name"]: g["rules"] for g in yaml.safe_load((ROOT / "infra/prometheus/rules.yaml").read_text())["groups"]}
    triggers = {r["alert"] for r in groups["drpilot-triggers"]}
    assert {"InferenceServiceDown", "ZoneFailure", "ModelStorageUnavailable", "InferenceSLOBurn"} <= triggers
    from workflows import metrics

    exported = {metrics.RUNS + "_total", metrics.RTO_MISSED + "_total"}
    used = " ".join(r["expr"] for r in groups["drpilot-self"])
    assert all(name in used for name in exported)


def test_the_worker_may_reach_every_endpoint_the_example_runbooks_name():
    # Egress is limited by port: each URL a runbook gives the worker (probes, Prometheus,
    # the drills' Alertmanager and Prometheus, notifiers) must be on an allowed port.
    from urllib.parse import urlsplit

    from drpilot.domain.loader import load_runbook

    rendered = render(OVERLAYS[0])
    egress = [p for p in by_kind(rendered, "NetworkPolicy").values() if "Egress" in p["spec"]["policyTypes"]]
    allowed = {port["port"] for p in egress for rule in p["spec"]["egress"] for port in rule.get("ports", [])}
    for path in sorted((ROOT / "runbooks").glob("*.yaml")):
        spec = load_runbook(path).spec
        urls = [r.endpoint for r in spec.regions.values()] + [r.prometheus for r in spec.regions.values()]
        if spec.drills is not None:
            urls += [spec.drills.alertmanager, spec.drills.prometheus]
        urls += [n.url for n in spec.notifications]
        for url in filter(None, urls):
            parts = urlsplit(url)
            port = parts.port or (443 if parts.scheme == "https" else 80)
            assert port in allowed, f"{path.name}: {url}: port {port} is not in the worker's egress NetworkPolicy"

"""The Helm chart: rendered by Helm's own engine, linted, and every manifest validated (strict) against the
Kubernetes JSON schemas; then what the deployment needs from it, resource by resource."""

from __future__ import annotations

import copy
import importlib
import os
from functools import cache
from typing import Any

import pytest
import yaml

from scripts import validate_deploy as vd
from tests.conftest import ROOT


def need(module: str) -> None:
    """Validation tools are installed by .ci/run: a missing one fails on CI and skips elsewhere."""
    if os.environ.get("CI"):
        importlib.import_module(module)
    else:
        pytest.importorskip(module, reason="not installed: scripts/validate_deploy.sh --install")


@cache
def _rendered(scenario: str) -> tuple[dict[str, Any], ...]:
    return tuple(vd.manifests(vd.render_chart(vd.CHART_SCENARIOS[scenario])))


def docs(scenario: str = "defaults") -> list[dict[str, Any]]:
    need("helm_python")
    return copy.deepcopy(list(_rendered(scenario)))


def find(items: list[dict[str, Any]], kind: str, suffix: str = "") -> dict[str, Any]:
    found = [d for d in items if d["kind"] == kind and d["metadata"]["name"].endswith(suffix)]
    assert len(found) == 1, f"{kind} *{suffix}: {[d['metadata']['name'] for d in found]}"
    return found[0]


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    (c,) = deployment["spec"]["template"]["spec"]["containers"]
    return c


def test_helm_lint_is_clean() -> None:
    need("helm_python")
    assert vd.helm_lint() == []


@pytest.mark.parametrize("scenario", sorted(vd.CHART_SCENARIOS))
def test_every_manifest_matches_the_kubernetes_schemas(scenario: str) -> None:
    need("kubernetes_validate")
    items = docs(scenario)
    problems = [p for version in vd.KUBERNETES_VERSIONS for d in items for p in vd.validate_manifest(d, version)]
    assert problems == []


def test_the_schema_check_catches_mistakes() -> None:
    need("kubernetes_validate")
    deployment = find(docs(), "Deployment", "-gateway")
    container(deployment)["readinessProbe"]["httpGet"]["prot"] = 8000
    assert vd.validate_manifest(deployment, "1.28.0")
    monitor = find(docs("production"), "ServiceMonitor")
    monitor["spec"]["endpoints"][0]["intervall"] = "30s"
    assert vd.validate_manifest(monitor, "1.28.0")


def test_values_schema_rejects_bad_values() -> None:
    need("helm_python")
    import helm_python

    for bad in ({"config": {"imos_model": "x"}}, {"engineCache": {"kind": "nfs"}}, {"worker": {"gpu": -1}},
                {"apiKeys": {"tenants": {"a": ["not-a-sha256"]}}}):
        with pytest.raises(helm_python.HelmError):
            vd.render_chart(bad)


def test_gateway_deployment_and_service() -> None:
    items = docs()
    gw = find(items, "Deployment", "-gateway")
    c = container(gw)
    assert c["args"] == ["gateway"]
    assert {p["name"]: p["containerPort"] for p in c["ports"]} == {"http": 8000, "grpc": 50051}
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["securityContext"]["readOnlyRootFilesystem"] and not c["securityContext"]["allowPrivilegeEscalation"]
    assert gw["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"]
    svc = find(items, "Service", "-gateway")
    ports = {p["name"]: p for p in svc["spec"]["ports"]}
    assert ports["grpc"]["appProtocol"] == "grpc" and ports["http"]["port"] == 8000
    headless = find(items, "Service", "-gateway-headless")
    assert headless["spec"]["clusterIP"] == "None"
    env = {e["name"]: e for e in c["env"]}
    assert env["IMOS_REDIS_URL"]["value"] == "redis://:$(REDIS_PASSWORD)@imos-serve-redis:6379/0"
    assert list(env).index("REDIS_PASSWORD") < list(env).index("IMOS_REDIS_URL"), "$(VAR) needs VAR first"


def test_workers_request_a_gpu_and_probe_health() -> None:
    items = docs()
    worker = find(items, "Deployment", "-worker")
    c = container(worker)
    assert c["args"] == ["worker"]
    assert c["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert c["startupProbe"]["httpGet"]["path"] == "/healthz"
    assert c["startupProbe"]["periodSeconds"] * c["startupProbe"]["failureThreshold"] >= 1200, \
        "the first TensorRT build needs time before liveness applies"
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    assert mounts["/var/cache/imos/engines"] == "engine-cache" and mounts["/tmp"] == "tmp"
    assert worker["spec"]["strategy"]["rollingUpdate"]["maxSurge"] == 0
    assert worker["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] >= 60
    config = find(items, "ConfigMap", "-worker")["data"]
    assert config["IMOS_BACKEND"] == "tensorrt" and config["IMOS_DEVICE"] == "cuda"


def test_disruption_budgets_for_both_roles() -> None:
    budgets = {d["metadata"]["name"]: d for d in docs() if d["kind"] == "PodDisruptionBudget"}
    assert set(budgets) == {"imos-serve-gateway", "imos-serve-worker"}
    for name, pdb in budgets.items():
        component = name.rsplit("-", 1)[1]
        assert pdb["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"] == component


def test_redis_is_a_persistent_statefulset_with_a_generated_password() -> None:
    items = docs()
    sts = find(items, "StatefulSet", "-redis")
    c = container(sts)
    assert "--appendonly yes" in c["command"][-1] and "requirepass" in c["command"][-1]
    assert sts["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"] == "8Gi"
    secret = find(items, "Secret", "-redis")
    assert len(secret["data"]["redis-password"]) >= 40
    assert c["env"][0]["valueFrom"]["secretKeyRef"]["name"] == secret["metadata"]["name"]


def test_configmap_and_secrets_carry_settings_keys_and_tls() -> None:
    items = docs("production")
    config = find(items, "ConfigMap", "imos-serve")["data"]
    assert config["IMOS_PACS__MAIN__URL"] == "http://orthanc:8042/dicom-web" and config["IMOS_PACS__MAIN__TIMEOUT_S"] == "30"
    assert find(items, "Secret", "imos-serve")["stringData"]["IMOS_PACS__MAIN__PASSWORD"] == "secret"
    keys = yaml.safe_load(find(items, "Secret", "-api-keys")["stringData"]["api-keys.yaml"])
    assert keys == {"radiology": ["0" * 64]}
    c = container(find(items, "Deployment", "-gateway"))
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env["IMOS_API_KEYS_FILE"] == "/etc/imos/api-keys/api-keys.yaml"
    assert env["IMOS_TLS_CLIENT_CA_FILE"] == "/etc/imos/tls/ca.crt"
    assert c["readinessProbe"]["httpGet"]["scheme"] == "HTTPS"
    mounts = {m["mountPath"] for m in c["volumeMounts"]}
    assert {"/etc/imos/api-keys", "/etc/imos/tls", "/opt/imos/model_repo"} <= mounts


def test_worker_autoscaler_scales_on_the_queue_depth_metric() -> None:
    items = docs("production")
    hpa = find(items, "HorizontalPodAutoscaler", "-worker")
    (metric,) = hpa["spec"]["metrics"]
    name = metric["external"]["metric"]["name"]
    assert metric["type"] == "External" and name == "imos_queue_depth_jobs" and name in vd.metric_names()
    assert hpa["spec"]["scaleTargetRef"]["name"] == find(items, "Deployment", "-worker")["metadata"]["name"]
    assert "replicas" not in find(items, "Deployment", "-worker")["spec"], "the HPA owns the replica count"
    adapter = yaml.safe_load((ROOT / "deploy" / "helm" / "prometheus-adapter-values.yaml").read_text())
    assert adapter["rules"]["external"][0]["name"]["as"] == name
    assert find(items, "PersistentVolumeClaim", "-engine-cache")["spec"]["accessModes"] == ["ReadWriteMany"]
    monitor = find(items, "ServiceMonitor")
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"


def test_cpu_workers_with_an_external_redis() -> None:
    items = docs("cpu-external-redis")
    assert not [d for d in items if d["kind"] == "StatefulSet"]
    c = container(find(items, "Deployment", "-worker"))
    assert "nvidia.com/gpu" not in c["resources"].get("limits", {})
    assert find(items, "Secret", "imos-serve")["stringData"]["IMOS_REDIS_URL"] == "redis://:pw@redis.example:6379/0"
    refs = [r["secretRef"]["name"] for r in c["envFrom"] if "secretRef" in r]
    assert refs == ["imos-serve", "imos-extra"]
    assert c["image"] == "imos-serve:cpu"
    assert container(find(items, "Deployment", "-gateway"))["image"] == "imos-serve:gateway"  # the slim image
    assert not [d for d in items if d["kind"] == "PodDisruptionBudget" and d["metadata"]["name"].endswith("-gateway")]

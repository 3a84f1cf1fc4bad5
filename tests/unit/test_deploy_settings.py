"""No drift between the deployment files and the service: every IMOS_ name they use is a real setting, and
.env.example and docs/operations.md list every setting with its default."""

from __future__ import annotations

import importlib
import os
import re

import pytest

from scripts import validate_deploy as vd
from service.settings import Settings
from tests.conftest import ROOT


def need(module: str) -> None:
    """Validation tools are installed by .ci/run: a missing one fails on CI and skips elsewhere."""
    if os.environ.get("CI"):
        importlib.import_module(module)
    else:
        pytest.importorskip(module, reason="not installed: scripts/validate_deploy.sh --install")


@pytest.mark.parametrize(("name", "known"), [
    ("IMOS_REDIS_URL", True), ("IMOS_WORKER_CONCURRENCY", True), ("IMOS_PACS__MAIN__URL", True),
    ("IMOS_PACS__RADIOLOGY_2__TIMEOUT_S", True), ("IMOS_PACS__<NAME>", True), ("IMOS_PACS__%s", True),
    ("IMOS_PACS__MAIN__BOGUS", False), ("IMOS_PACS__MAIN", False), ("IMOS_ENGINE_CACHE", False),
    ("IMOS_API_KEY", False),  # the command-line client's variable, not a server setting
])
def test_what_counts_as_a_setting(name: str, known: bool) -> None:
    assert vd.is_setting(name) is known


def test_every_imos_name_in_the_deployment_files_is_a_setting() -> None:
    need("helm_python")  # the rendered chart is checked too
    unknown = [f"{label}: {name}" for label, text in vd.deployment_texts() for name in sorted(vd.imos_names(text))
               if not vd.is_setting(name)]
    assert unknown == []


def test_the_drift_check_would_notice_a_stray_name() -> None:
    text = "environment:\n  IMOS_WORKERS: 2\n  IMOS_HTTP_PORT: 8000\n"
    assert [n for n in sorted(vd.imos_names(text)) if not vd.is_setting(n)] == ["IMOS_WORKERS"]


def test_env_example_lists_every_setting_at_its_default() -> None:
    text = (ROOT / ".env.example").read_text()
    assert vd.env_example_block() in text, "stale: python scripts/validate_deploy.py --write"
    for name, field in Settings.model_fields.items():
        default = "" if field.default is None else str(field.default)
        assert re.search(rf"^#IMOS_{name.upper()}={re.escape(default)}$", text, re.MULTILINE), name
    assert re.search(r"^REDIS_PASSWORD=$", text, re.MULTILINE), "the password stays empty in the example"


def test_operations_guide_lists_every_setting_with_its_default() -> None:
    text = (ROOT / "docs" / "operations.md").read_text()
    assert vd.docs_table() in text, "stale: python scripts/validate_deploy.py --write"
    for name, field in Settings.model_fields.items():
        default = "unset" if field.default is None else str(field.default)
        assert f"| `IMOS_{name.upper()}` | `{default}` |" in text


def test_dockerfile_and_chart_defaults_are_valid_settings() -> None:
    """The values the images and the chart give settings parse as Settings would parse them."""
    need("helm_python")
    values: dict[str, str] = {}
    for _word, rest in re.findall(r"^(ENV)\s+(.*?)(?<!\\)$", (ROOT / "Dockerfile").read_text().replace("\\\n", " "),
                                 re.MULTILINE | re.DOTALL):
        values.update(re.findall(r"(IMOS_[A-Z_]+)=(\S+)", rest))
    for doc in vd.manifests(vd.render_chart()):
        if doc["kind"] == "ConfigMap":
            values.update({k: v for k, v in (doc.get("data") or {}).items() if k.startswith("IMOS_")})
    assert {"IMOS_HTTP_HOST", "IMOS_BACKEND", "IMOS_MODEL", "IMOS_WORKER_CONCURRENCY"} <= set(values)
    fields = {f"IMOS_{n.upper()}": n for n in Settings.model_fields}
    Settings(**{fields[k]: v for k, v in values.items()})  # raises on a value of the wrong type

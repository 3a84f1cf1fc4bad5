"""Every IMOS_ setting is documented in the README, and the environment reaches Settings."""

from __future__ import annotations

import pytest

from service.settings import Settings
from tests.conftest import ROOT


def test_readme_lists_every_setting() -> None:
    readme = (ROOT / "README.md").read_text()
    missing = [f"IMOS_{n.upper()}" for n in Settings.model_fields if f"`IMOS_{n.upper()}`" not in readme]
    assert not missing, f"README lacks {missing}"


def test_environment_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMOS_HTTP_PORT", "9123")
    monkeypatch.setenv("IMOS_REDIS_URL", "redis://example.invalid:6379/1")
    s = Settings()
    assert s.http_port == 9123 and s.redis_url == "redis://example.invalid:6379/1"

"""The serving roles' flags: every precision the engine offers is accepted, and flags override the environment."""

from __future__ import annotations

import pytest

from service.cli.main import build_parser
from service.cli.roles import settings_from


@pytest.mark.parametrize("role", ["serve", "worker"])
@pytest.mark.parametrize(("backend", "precision"), [("torch", "fp32"), ("torch", "bf16"), ("torch", "fp16"),
                                                     ("onnx", "int8")])
def test_every_engine_precision_is_a_flag(role: str, backend: str, precision: str) -> None:
    args = build_parser().parse_args([role, "--backend", backend, "--precision", precision])
    settings = settings_from(args)
    assert (settings.backend, settings.precision) == (backend, precision)


def test_a_flag_wins_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMOS_PRECISION", "bf16")
    monkeypatch.setenv("IMOS_BACKEND", "torch")
    settings = settings_from(build_parser().parse_args(["serve", "--backend", "onnx", "--precision", "int8"]))
    assert (settings.backend, settings.precision) == ("onnx", "int8")


def test_an_unknown_precision_is_refused_naming_the_choices(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(["serve", "--precision", "int4"])
    assert exc.value.code == 2
    assert "int8" in capsys.readouterr().err

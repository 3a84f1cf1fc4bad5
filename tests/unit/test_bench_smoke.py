"""The benchmark commands run and report what they promise (no timing assertions: machines are noisy)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from service.cli.main import main


def test_bench_state_reports_bytes_and_checkpoint_fraction(tiny_repo: Path, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "state.json"
    assert main(["bench", "state", "--model", "tiny", "--model-repo", str(tiny_repo), "--size", "64",
                 "--frames", "12", "--objects", "2", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["state_bytes_fp16"] < report["state_bytes_fp32"]
    assert report["checkpoint_fraction_of_frame"] > 0 and report["objects"] == 2
    capsys.readouterr()


def test_bench_engine_runs_each_backend_in_its_own_process(tiny_repo: Path, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "engine.json"
    assert main(["bench", "engine", "--model", "tiny", "--model-repo", str(tiny_repo), "--backend", "torch,onnx",
                 "--size", "64", "--frames", "6", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert [r["backend"] for r in report["runs"]] == ["torch", "onnxruntime"]
    assert all(r["frames_per_s"] > 0 and r["peak_rss_mb"] > 0 for r in report["runs"])
    assert set(report["ratio_to_first"]) == {"torch", "onnxruntime"}
    capsys.readouterr()


def test_bench_serving_reports_ratios_for_every_transport(tiny_repo: Path, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "serving.json"
    assert main(["bench", "serving", "--model", "tiny", "--model-repo", str(tiny_repo), "--size", "48",
                 "--frames", "8", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert set(report["ratio_to_in_process"]) == {"rest_one_shot", "rest_sessions_sse", "grpc_track"}
    assert all(v > 0 for v in report["ratio_to_in_process"].values())
    capsys.readouterr()

"""scripts/gpu_plan.py: the training steps a device session's time left allows, from a calibration log."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from scripts.gpu_plan import seconds_per_step
from tests.conftest import ROOT


def _log(tmp_path: Path, seconds: list[float]) -> Path:
    rows = [{"event": "note", "message": "start"}]
    rows += [{"event": "step", "step": i, "seconds": s} for i, s in enumerate(seconds)]
    rows.append({"event": "eval", "step": len(seconds), "score": 0.5, "seconds": 30.0})
    path = tmp_path / "log.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def _plan(log: Path, *args: str) -> int:
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "gpu_plan.py"), str(log), *args],
                         capture_output=True, text=True, check=True)
    return int(out.stdout)


def test_the_first_steps_and_evaluations_do_not_count(tmp_path: Path) -> None:
    log = _log(tmp_path, [9.0] * 5 + [0.5] * 30)  # CUDA start and first batches, then steady steps
    assert seconds_per_step(log) == pytest.approx(0.5)


def test_steps_fill_the_time_left_less_the_margin_in_whole_rounds(tmp_path: Path) -> None:
    log = _log(tmp_path, [9.0] * 5 + [0.1] * 30)
    assert _plan(log, "460", "--margin", "60") == 4000
    assert _plan(log, "460", "--margin", "60", "--round", "300") == 3900
    assert _plan(log, "460", "--max", "1000") == 1000
    assert _plan(log, "30", "--margin", "60") == 100  # never nothing: one round at least


def test_a_log_without_steps_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    path.write_text(json.dumps({"event": "note", "message": "x"}) + "\n")
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "gpu_plan.py"), str(path), "100"],
                          capture_output=True, text=True)
    assert proc.returncode != 0 and "no training steps" in proc.stderr

"""The engine computes what XMem computes: the conformance fixture, every case."""

from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from service.engine.backends.torch_backend import TorchStages
from service.engine.propagate import Propagator
from service.engine.repo import ModelRepo
from service.engine.spec import MemoryConfig
from service.engine.synthetic import synthetic_state_dict
from tests.conftest import PARITY

CASES = ["forward", "mid_forward", "mid_backward", "forward_lt_evict", "pad_crop90x120"]


def _checker() -> Any:
    spec = importlib.util.spec_from_file_location("xmem_check", PARITY / "check_outputs.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _case_inputs(name: str) -> tuple[np.ndarray, np.ndarray, int, str, MemoryConfig]:
    cfg_doc = json.loads((PARITY / "config.json").read_text())
    case = cfg_doc["cases"][name]
    settings = {**cfg_doc["inference_config"], **case["config_overrides"], "size": -1}
    cfg = MemoryConfig(**settings)
    frames = np.load(PARITY / "frames.npy")
    order = case["frame_indices_in_processing_order"]
    mask = np.load(PARITY / ("mask15.npy" if order[0] == 15 else "mask0.npy"))
    if name == "pad_crop90x120":
        frames, mask = frames[:12, 3:93, 4:124], mask[3:93, 4:124]
    direction = "backward" if order[1] < order[0] else "forward"
    return frames, mask, order[0], direction, cfg


def test_synthetic_rule_matches_fixture_checksums() -> None:
    if not PARITY.is_dir():
        pytest.skip("../shared/fixtures/xmem_parity is not present")
    manifest = json.loads((PARITY / "manifest.json").read_text())["entries"]
    sums = json.loads((PARITY / "weights_checksums.json").read_text())
    sd = synthetic_state_dict((e["key"], tuple(e["shape"])) for e in manifest)
    assert len(sd) == 412
    for key, t in sd.items():
        arr = np.ascontiguousarray(t.numpy())
        assert hashlib.sha256(arr.tobytes()).hexdigest() == sums[key]["sha256"], key


@pytest.mark.parametrize("case", CASES)
def test_parity_case(case: str, parity_repo: Path) -> None:
    repo = ModelRepo(parity_repo)
    entry = repo.entry("xmem-synthetic")
    assert entry.spec.value_input_channels == 5
    frames, mask, anchor, direction, cfg = _case_inputs(case)
    prop = Propagator(TorchStages(repo.load_network(entry)), cfg, "xmem-synthetic:1", max_objects=16)
    results = list(prop.run(list(frames), mask, anchor, direction))
    ours = np.stack([r.probs for r in results])
    ref = np.load(PARITY / f"probs_{case}.npy")
    verdict = _checker().evaluate(ref, ours)
    bad = [f for f in verdict["frames"] if not f["pass"]]
    assert verdict["pass"], f"{case}: failing frames {bad[:3]}"
    # The fixture allows 1e-4 per pixel. Tighter bounds catch drift early, but the worst pixel depends
    # on the CPU's kernels: max 2e-5 held on AVX-512 hosts, while an AVX2-only host (Zen 3) gave 1.9e-5
    # to 3.4e-5 from run to run with the same code (mean of the per-pixel max 1.8e-6).
    mean_abs = float(np.abs(ours - ref).max(axis=1).mean())
    assert verdict["max_abs"] < 5e-5, f"{case}: max |dp| {verdict['max_abs']:.2e} (XMem's own fp64 run: 8.9e-6)"
    assert mean_abs < 5e-6, f"{case}: mean |dp| {mean_abs:.2e}"

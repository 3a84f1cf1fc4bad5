"""ONNX Runtime runs XMem's architecture like torch: within 1e-3 on the parity fixture."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from service.engine.loader import load_engine
from tests.conftest import PARITY
from tests.unit.test_xmem_parity import _case_inputs


def test_onnxruntime_matches_torch_and_xmem_on_forward_case(parity_repo: Path) -> None:
    frames, mask, anchor, direction, cfg = _case_inputs("forward")
    overrides = {k: str(v) for k, v in dataclasses.asdict(cfg).items()}
    outputs = {}
    for backend in ("torch", "onnx"):
        engine = load_engine(parity_repo, "xmem-synthetic", backend)
        prop = engine.propagator(overrides)
        outputs[backend] = np.stack([r.probs for r in prop.run(list(frames), mask, anchor, direction)])
    assert (parity_repo / "xmem-synthetic" / "1" / "build" / "onnx" / "export.json").is_file()
    assert float(np.abs(outputs["onnx"] - outputs["torch"]).max()) < 1e-3
    ref = np.load(PARITY / "probs_forward.npy")
    assert float(np.abs(outputs["onnx"] - ref).max()) < 1e-3

"""The Open Inference Protocol over gRPC (inference.GRPCInferenceService on the service's gRPC port),
driven by Triton's own client (tritonclient.grpc, in its own process: see kserve_grpc_driver.py) against
`imos serve` with the bundled model: health and metadata, a one-shot infer with raw tensors, a sequence
one frame per request, named errors. Masks equal `imos segment`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from tests.e2e.procs import imos_segment
from tests.medical_builders import dev_sequence

DRIVER = Path(__file__).with_name("kserve_grpc_driver.py")


def test_triton_grpc_client_one_shot_and_sequence(bundled_serve: tuple[str, str], tmp_path: Path) -> None:
    frames, masks = dev_sequence("cvc__fine_3")
    frames, k = np.stack(frames[:6]), 2
    np.savez(tmp_path / "job.npz", frames=frames, mask=masks[k].astype(np.uint8), mask0=masks[0].astype(np.uint8), k=k)
    done = subprocess.run([sys.executable, str(DRIVER), bundled_serve[1], str(tmp_path / "job.npz"),
                           str(tmp_path / "out.npz")], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    out = np.load(tmp_path / "out.npz")
    checks = json.loads(str(out["checks"]))
    assert checks["live"] and checks["ready"] and checks["model_ready"] and checks["inputs"] == ["FRAMES", "MASK"]
    assert "binary_tensor_data" in checks["extensions"]
    assert "INVALID_ARGUMENT" in checks["missing_mask"][0] and "MASK" in checks["missing_mask"][1]
    assert "NOT_FOUND" in checks["unknown_model"][0] and "not served here" in checks["unknown_model"][1]
    both = imos_segment(list(frames), masks[k].astype(np.uint8), k, tmp_path / "both")
    np.testing.assert_array_equal(out["one_shot"], np.stack(both))
    forward = imos_segment(list(frames), masks[0].astype(np.uint8), 0, tmp_path / "fwd", direction="forward")
    np.testing.assert_array_equal(out["sequence"], np.stack(forward))

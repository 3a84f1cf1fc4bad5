"""The gateway owns no model: importing it (REST app, gRPC server, the CLI, a gateway runtime) loads
neither torch nor ONNX Runtime, so it runs from the slim image (Dockerfile target `gateway`)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import sys
import service.gateway.rest.app, service.gateway.grpc_server, service.serve, service.cli.main
from service.runtime import build_runtime
from service.settings import Settings
from service.gateway.rest.app import create_app
rt = build_runtime(Settings(redis_url="redis://127.0.0.1:1/0"), "gateway")
create_app(rt)
loaded = sorted(m for m in ("torch", "onnx", "onnxruntime") if m in sys.modules)
print(",".join(loaded) or "none")
"""


def test_importing_the_gateway_leaves_torch_out() -> None:
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, cwd=ROOT, timeout=120,
                         check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "none"

"""schemathesis against the served OpenAPI document: >= 1,000 generated requests, no 5xx, every
response matching its documented schema."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.procs import free_port, imos_process, wait_ready


def test_openapi_fuzz(tiny_repo: Path, tmp_path: Path) -> None:
    beside = Path(sys.executable).parent / "st"  # the venv's, also when the venv is not activated
    st = str(beside) if beside.exists() else shutil.which("st")
    if st is None:
        pytest.fail("schemathesis is a test dependency (pip install -e '.[test]')")
    http = free_port()
    env = {"IMOS_MODEL": "tiny", "IMOS_MODEL_REPO": str(tiny_repo), "IMOS_LOG_JSON": "true"}
    log = tmp_path / "serve.log"
    with imos_process(["serve", "--http-port", str(http), "--grpc-port", str(free_port())], env, log) as proc:
        url = f"http://127.0.0.1:{http}"
        wait_ready(url, proc, log)
        run = subprocess.run([st, "run", f"{url}/openapi.json", "--checks", "not_a_server_error,response_schema_conformance",
                              "--max-examples", "80", "--workers", "1", "--seed", "1234"],
                             capture_output=True, text=True, timeout=400)
    out = run.stdout + run.stderr
    assert run.returncode == 0, out[-4000:]
    generated = int(re.search(r"(\d+) generated", out).group(1))  # type: ignore[union-attr]
    assert generated >= 1000, out[-2000:]
    assert "Traceback" not in log.read_text()

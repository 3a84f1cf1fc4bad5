"""The image's entrypoint, run for real with stand-ins for `imos` and `nvidia-smi`: model repository view
over the engine cache, warm-up under a lock, one GPU per worker, pass-through; and the health check."""

from __future__ import annotations

import http.server
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from service.engine.repo import ModelRepo
from tests.conftest import ROOT

ENTRYPOINT = ROOT / "deploy" / "docker" / "entrypoint.sh"
HEALTHCHECK = ROOT / "deploy" / "docker" / "healthcheck.py"

pytestmark = pytest.mark.skipif(shutil.which("flock") is None, reason="needs flock (util-linux)")

FAKE_IMOS = """#!/usr/bin/env bash
# records each call: arguments, the environment it got, and what the model repository looks like
{
  printf '{"args": "%s", "repo": "%s", "gpu": "%s"}\\n' "$*" "$IMOS_MODEL_REPO" "${CUDA_VISIBLE_DEVICES:-}"
} >> "$CALLS"
if [ -n "${HOLD:-}" ] && [ "$1" != export ]; then
  while [ ! -e "$HOLD" ]; do sleep 0.05; done
fi
"""


@pytest.fixture()
def env(tmp_path: Path) -> dict[str, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "imos").write_text(FAKE_IMOS)
    (bin_dir / "nvidia-smi").write_text("#!/bin/sh\necho GPU-aaaa\necho GPU-bbbb\n")
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    src = tmp_path / "repo"
    (src / "lite" / "1" / "build").mkdir(parents=True)
    (src / "lite" / "model.yaml").write_text("name: lite\n")
    (src / "lite" / "1" / "weights.safetensors").write_bytes(b"w")
    (src / "lite" / "1" / "build" / "stale.plan").write_bytes(b"old")
    (src / "notamodel").mkdir()
    (tmp_path / "tmp").mkdir()
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("IMOS_", "CUDA_", "GPU_", "ENGINE_"))}
    return {**keep, "PATH": f"{bin_dir}:{os.environ['PATH']}", "CALLS": str(tmp_path / "calls.jsonl"),
            "TMPDIR": str(tmp_path / "tmp"), "IMOS_MODEL_REPO": str(src), "IMOS_LOG_JSON": "true",
            "ENGINE_CACHE_DIR": str(tmp_path / "cache")}


def run(env: dict[str, str], *args: str, **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(ENTRYPOINT), *args], env=env, capture_output=True, text=True,
                          timeout=30, check=False, **kw)  # type: ignore[call-overload]


def calls(env: dict[str, str]) -> list[dict[str, str]]:
    path = Path(env["CALLS"])
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_view_links_the_repository_and_puts_build_in_the_cache(env: dict[str, str]) -> None:
    proc = run(env, "gateway")
    assert proc.returncode == 0, proc.stderr
    (call,) = calls(env)
    assert call["args"] == "gateway"
    view = Path(call["repo"])
    assert view != Path(env["IMOS_MODEL_REPO"])
    src, cache = Path(env["IMOS_MODEL_REPO"]), Path(env["ENGINE_CACHE_DIR"])
    assert (view / "lite" / "model.yaml").resolve() == (src / "lite" / "model.yaml").resolve()
    assert (view / "lite" / "1" / "weights.safetensors").resolve() == (src / "lite" / "1" / "weights.safetensors")
    assert (view / "lite" / "1" / "build").resolve() == (cache / "lite" / "1").resolve()
    assert (cache / "lite" / "1").is_dir() and not (view / "lite" / "1" / "build" / "stale.plan").exists()
    assert not (view / "notamodel").exists()


@pytest.mark.parametrize(("backend", "warm"), [("tensorrt", True), ("onnx", True), ("torch", False)])
def test_model_roles_warm_up_their_engines_first(env: dict[str, str], backend: str, warm: bool) -> None:
    env = {**env, "IMOS_BACKEND": backend, "IMOS_MODEL": "lite"}
    proc = run(env, "serve")
    assert proc.returncode == 0, proc.stderr
    got = [c["args"] for c in calls(env)]
    assert got == ([f"export lite --backend {backend}", "serve"] if warm else ["serve"])
    if warm:
        assert (Path(env["ENGINE_CACHE_DIR"]) / ".build.lock").exists()
        assert '"logger": "imos.entrypoint"' in proc.stderr


@pytest.mark.parametrize("precision", ["int8", "auto"])
def test_int8_onnx_workers_warm_up_their_int8_graphs(env: dict[str, str], precision: str) -> None:
    # auto: imos export resolves it as the worker will (int8 where the CPU has VNNI / AMX-INT8)
    env = {**env, "IMOS_BACKEND": "onnx", "IMOS_MODEL": "lite", "IMOS_PRECISION": precision}
    assert run(env, "worker").returncode == 0
    assert [c["args"] for c in calls(env)] == [f"export lite --backend onnx --precision {precision}", "worker"]


def test_fp32_or_torch_workers_warm_up_plain_graphs(env: dict[str, str]) -> None:
    env = {**env, "IMOS_BACKEND": "onnx", "IMOS_MODEL": "lite", "IMOS_PRECISION": "fp32"}
    assert run(env, "worker").returncode == 0
    assert [c["args"] for c in calls(env)] == ["export lite --backend onnx", "worker"]


def test_gateway_and_warmup_off_build_nothing(env: dict[str, str]) -> None:
    assert run({**env, "IMOS_BACKEND": "tensorrt"}, "gateway").returncode == 0
    assert run({**env, "IMOS_BACKEND": "tensorrt", "ENGINE_WARMUP": "0"}, "worker").returncode == 0
    assert [c["args"] for c in calls(env)] == ["gateway", "worker"]


def test_import_uses_the_real_repository(env: dict[str, str]) -> None:
    assert run(env, "import-checkpoint", "/import/X.pth", "--name", "x").returncode == 0
    (call,) = calls(env)
    assert call["repo"] == env["IMOS_MODEL_REPO"]


def test_other_commands_run_as_given_with_the_view(env: dict[str, str], tmp_path: Path) -> None:
    proc = run({**env, "GPU_CLAIM_DIR": str(tmp_path / "claims")}, "sh", "-c", 'echo "$IMOS_MODEL_REPO"')
    assert proc.returncode == 0, proc.stderr
    view = Path(proc.stdout.strip())
    assert view.name.startswith("imos-model-repo.") and (view / "lite" / "1" / "build").is_symlink()
    assert calls(env) == [] and not (tmp_path / "claims").exists(), "tools claim no GPU"


def test_each_worker_claims_its_own_gpu_and_frees_it_on_exit(env: dict[str, str], tmp_path: Path) -> None:
    hold = tmp_path / "release"
    env = {**env, "GPU_CLAIM_DIR": str(tmp_path / "claims"), "HOLD": str(hold)}
    first = subprocess.Popen(["bash", str(ENTRYPOINT), "worker"], env=env, stderr=subprocess.PIPE, text=True)
    second = subprocess.Popen(["bash", str(ENTRYPOINT), "worker"], env=env, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 20
        while len(calls(env)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert sorted(c["gpu"] for c in calls(env)) == ["GPU-aaaa", "GPU-bbbb"]
        third = run(env, "worker")  # both GPUs are held by running workers
        assert third.returncode == 1 and "claimed by other workers" in third.stderr
        assert run({**env, "HOLD": ""}, "gateway").returncode == 0  # gateways claim no GPU
    finally:
        hold.touch()
        first.wait(10)
        second.wait(10)
    hold.unlink()
    replacement = subprocess.Popen(["bash", str(ENTRYPOINT), "worker"], env=env, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 20
        while len(calls(env)) < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert calls(env)[-1]["gpu"] in ("GPU-aaaa", "GPU-bbbb"), "a freed GPU can be claimed again"
    finally:
        hold.touch()
        replacement.wait(10)


def test_a_preassigned_gpu_is_kept(env: dict[str, str], tmp_path: Path) -> None:
    env = {**env, "GPU_CLAIM_DIR": str(tmp_path / "claims"), "CUDA_VISIBLE_DEVICES": "3"}
    assert run(env, "worker").returncode == 0
    assert calls(env)[0]["gpu"] == "3"


class _Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response({"/healthz": 200, "/readyz": 503}.get(self.path, 404))
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture()
def server() -> Iterator[int]:
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv.server_address[1]
    srv.shutdown()
    srv.server_close()


def test_healthcheck_asks_its_own_port(server: int) -> None:
    env = {**os.environ, "IMOS_HTTP_PORT": str(server)}
    env.pop("IMOS_TLS_CERT_FILE", None)
    ok = subprocess.run([sys.executable, str(HEALTHCHECK)], env=env, capture_output=True, text=True, timeout=20, check=False)
    assert ok.returncode == 0, ok.stderr
    ready = subprocess.run([sys.executable, str(HEALTHCHECK), "/readyz"], env=env, capture_output=True, text=True,
                           timeout=20, check=False)
    assert ready.returncode == 1 and "HTTP 503" in ready.stderr


def test_healthcheck_fails_when_nothing_listens(server: int) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        free = s.getsockname()[1]
    env = {**os.environ, "IMOS_HTTP_PORT": str(free), "HEALTHCHECK_TIMEOUT_S": "2"}
    proc = subprocess.run([sys.executable, str(HEALTHCHECK)], env=env, capture_output=True, text=True, timeout=20, check=False)
    assert proc.returncode == 1 and "unhealthy" in proc.stderr


def test_the_real_service_behind_the_entrypoint(tmp_path: Path) -> None:
    """`imos serve` started by the entrypoint (model repository view over an engine cache) passes the image's
    health check and the smoke test, and stops cleanly on SIGTERM."""
    import signal
    import socket

    def free() -> int:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return int(s.getsockname()[1])

    http_port = free()
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("IMOS_", "CUDA_", "GPU_", "ENGINE_"))}
    env = {**keep, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "PYTHONPATH": str(ROOT),
           "TMPDIR": str(tmp_path), "ENGINE_CACHE_DIR": str(tmp_path / "cache"), "IMOS_MODEL_REPO": str(ROOT / "model_repo"),
           "IMOS_HTTP_PORT": str(http_port), "IMOS_GRPC_PORT": str(free()), "IMOS_BACKEND": "torch",
           "IMOS_MODEL": "imos-lite"}
    log = (tmp_path / "serve.log").open("wb")
    proc = subprocess.Popen(["bash", str(ENTRYPOINT), "serve"], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        smoke = subprocess.run([sys.executable, str(ROOT / "deploy" / "docker" / "smoke.py"), "--frames", "6",
                                "--height", "48", "--width", "64", "--timeout", "60"],
                               env=env, capture_output=True, text=True, timeout=120,
                               check=False)
        assert smoke.returncode == 0, smoke.stderr + (tmp_path / "serve.log").read_text()[-2000:]
        assert json.loads(smoke.stdout)["ok"] is True
        for path in ("/healthz", "/readyz"):
            check = subprocess.run([sys.executable, str(HEALTHCHECK), path], env=env, capture_output=True, timeout=20,
                                   check=False)
            assert check.returncode == 0, check.stderr
        version = str(ModelRepo(ROOT / "model_repo").entry("imos-lite").version)
        assert (tmp_path / "cache" / "imos-lite" / version).is_dir(), "the model's build folder is in the cache"
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(30)
        log.close()
    assert code == 0, (tmp_path / "serve.log").read_text()[-2000:]

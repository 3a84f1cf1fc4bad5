"""A bounded load test on loopback: concurrent sessions, mixed REST and gRPC, gateway + 2 workers on
real Redis. Zero errors, and worker memory stays flat from one round of sessions to the next (workers
keep no session in memory between frames: state lives in Redis). Full size: `imos bench load`."""

from __future__ import annotations

from pathlib import Path

from service.bench.load import run_load
from tests.e2e.procs import free_port, imos_process, wait_ready


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def test_reduced_load_mixed_transports(tiny_repo: Path, redis_url: str, redis_prefix: str, tmp_path: Path) -> None:
    http, grpc_port = free_port(), free_port()
    env = {"IMOS_MODEL": "tiny", "IMOS_MODEL_REPO": str(tiny_repo), "IMOS_REDIS_URL": redis_url,
           "IMOS_KEY_PREFIX": redis_prefix, "IMOS_LOG_JSON": "true"}
    gw_args = ["gateway", "--http-port", str(http), "--grpc-port", str(grpc_port)]
    with imos_process(gw_args, env, tmp_path / "gw.log") as gw, \
            imos_process(["worker", "--http-port", "0"], env, tmp_path / "w1.log") as w1, \
            imos_process(["worker", "--http-port", "-1"], env, tmp_path / "w2.log"):
        url = f"http://127.0.0.1:{http}"
        wait_ready(url, gw, tmp_path / "gw.log")
        first = run_load(url, f"127.0.0.1:{grpc_port}", sessions=8, frames=24, size=48)
        after_first = _rss_mb(w1.pid)
        second = run_load(url, f"127.0.0.1:{grpc_port}", sessions=8, frames=24, size=48)
        after_second = _rss_mb(w1.pid)
    for report in (first, second):
        assert report["errors"] == [], report["errors"]
        assert report["by_transport"] == {"rest": 4, "grpc": 4}
    assert after_second < after_first * 1.15 + 20, (after_first, after_second)

"""Start real `imos` processes on free ports for end-to-end tests, and stop them."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def imos_process(args: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """Run `python -m service.cli.main ARGS`; SIGTERM and wait on exit."""
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **env}
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "service.cli.main", *args], env=full_env,
                                stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
        try:
            yield proc
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


def wait_ready(url: str, proc: subprocess.Popen[bytes], log: Path, timeout_s: float = 90) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"process exited early ({proc.returncode}):\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"{url} not ready after {timeout_s}s:\n{log.read_text()[-3000:]}")


def imos_segment(frames: list[np.ndarray], mask: np.ndarray, frame: int, tmp: Path,
                 direction: str = "both") -> list[np.ndarray]:
    """`imos segment` (the CLI, in-process engine, bundled model) from ``frame``: every frame's index mask."""
    tmp.mkdir(parents=True, exist_ok=True)
    np.save(tmp / "frames.npy", np.stack(frames))
    np.save(tmp / "mask.npy", mask)
    out = tmp / "segment"
    done = subprocess.run([sys.executable, "-m", "service.cli.main", "segment", str(tmp / "frames.npy"), "--mask",
                           str(tmp / "mask.npy"), "--frame", str(frame), "--direction", direction, "--quiet",
                           "-o", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr[-3000:]
    return [np.asarray(Image.open(p)) for p in sorted(out.glob("*.png"))]

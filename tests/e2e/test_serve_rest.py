"""`imos serve` as a real process: REST one-shot and `imos segment --server` on a dev sequence."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from service.cli.main import main
from service.io.images import read_frames
from service.rest_client import RestClient
from tests.conftest import DATA_DEV
from tests.e2e.procs import free_port, imos_process, wait_ready

SEQ = "hippocampus__003"


@pytest.fixture()
def dev_paths() -> tuple[Path, Path]:
    frames, masks = DATA_DEV / "JPEGImages" / SEQ, DATA_DEV / "Annotations" / SEQ
    if not frames.is_dir():
        pytest.skip("../shared/data/dev is not present")
    return frames, masks


def test_serve_one_shot_and_cli_client(dev_paths: tuple[Path, Path], tiny_repo: Path, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    frames_dir, masks_dir = dev_paths
    n = len(list(frames_dir.iterdir()))
    mid = n // 2
    http, grpc_port = free_port(), free_port()
    env = {"IMOS_MODEL": "tiny", "IMOS_MODEL_REPO": str(tiny_repo), "IMOS_LOG_JSON": "true"}
    args = ["serve", "--http-port", str(http), "--grpc-port", str(grpc_port)]
    log = tmp_path / "serve.log"
    with imos_process(args, env, log) as proc:
        url = f"http://127.0.0.1:{http}"
        wait_ready(url, proc, log)
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            for p in sorted(frames_dir.iterdir()):
                zf.writestr(p.name, p.read_bytes())
        mask_png = (masks_dir / f"{mid:05d}.png").read_bytes()
        r = httpx.post(f"{url}/v1/segment", files={"sequence": ("seq.zip", buf.getvalue()),
                                                   "mask": ("mask.png", mask_png)},
                       data={"frame": str(mid), "output": "npy"}, timeout=120)
        assert r.status_code == 200, r.text
        out = np.load(io.BytesIO(r.content))
        first = read_frames(frames_dir)[0]
        assert out.shape == (n, *first.shape[:2])
        assert set(np.unique(out)) <= {0, 1, 2}
        code = main(["segment", str(frames_dir), "--mask", str(masks_dir / f"{mid:05d}.png"), "--frame", str(mid),
                     "--server", url, "--quiet", "-o", str(tmp_path / "cli")])
        assert code == 0 and len(list((tmp_path / "cli").iterdir())) == n
        assert "(model tiny:1)" in capsys.readouterr().out  # the server's model, not a placeholder
        # the CLI client sends both directions as a live stream; a batch session gives the same masks
        frames, mask = read_frames(frames_dir), np.asarray(Image.open(masks_dir / f"{mid:05d}.png"))
        client = RestClient(url)
        try:
            live = client.segment(frames, mask, mid, chunk=3)
            assert client.model == "tiny:1"
            batch = client.segment(frames, mask, mid, live=False)
        finally:
            client.close()
        assert len(live) == n
        for a, b in zip(live, batch, strict=True):
            np.testing.assert_array_equal(a, b)
    text = log.read_text()
    assert '"msg": "started"' in text

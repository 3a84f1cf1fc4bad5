"""`imos segment` on a real dev sequence (a folder of PNGs), end to end through the CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from service.cli.main import main
from tests.conftest import DATA_DEV

SEQ = "acdc__patient001_ED"


@pytest.fixture()
def dev_seq() -> tuple[Path, Path]:
    frames, masks = DATA_DEV / "JPEGImages" / SEQ, DATA_DEV / "Annotations" / SEQ
    if not frames.is_dir():
        pytest.skip("../shared/data/dev is not present")
    return frames, masks


def test_segment_both_directions_from_a_middle_frame(dev_seq: tuple[Path, Path], tmp_path: Path) -> None:
    frames, masks = dev_seq
    out, probs_dir = tmp_path / "out", tmp_path / "probs"
    code = main(["segment", str(frames), "--mask", str(masks / "00002.png"), "--frame", "2", "--quiet",
                 "--set", "size=64", "--save-probs", str(probs_dir), "-o", str(out)])
    assert code == 0
    written = sorted(p.name for p in out.iterdir())
    assert written == [f"{i:05d}.png" for i in range(5)]
    given = np.asarray(Image.open(masks / "00002.png"))
    first = Image.open(out / "00000.png")
    assert first.mode == "P" and first.size == (given.shape[1], given.shape[0])
    probs = np.load(probs_dir / "probs.npy")
    k = len(np.unique(given)) - 1
    assert probs.shape == (5, k + 1, *given.shape) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-4)
    anchor = np.asarray(Image.open(out / "00002.png"))
    assert (anchor == given).mean() > 0.95  # the annotated frame reproduces its mask (up to resizing)


def test_segment_forward_only_leaves_earlier_frames_background(dev_seq: tuple[Path, Path], tmp_path: Path) -> None:
    frames, masks = dev_seq
    probs_dir = tmp_path / "p"
    assert main(["segment", str(frames), "--mask", str(masks / "00002.png"), "--frame", "2", "--quiet",
                 "--direction", "forward", "--set", "size=64", "--save-probs", str(probs_dir),
                 "-o", str(tmp_path / "o")]) == 0
    probs = np.load(probs_dir / "probs.npy")
    assert (probs[:2, 0] == 1).all() and (probs[:2, 1:] == 0).all()
    assert not np.asarray(Image.open(tmp_path / "o" / "00000.png")).any()


def test_segment_npy_input_and_clear_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    frames = np.random.default_rng(0).integers(0, 255, (4, 40, 56), dtype=np.uint8)
    np.save(tmp_path / "f.npy", frames)
    mask = np.zeros((40, 56), np.uint8)
    mask[10:20, 10:30] = 1
    np.save(tmp_path / "m.npy", mask)
    assert main(["segment", str(tmp_path / "f.npy"), "--mask", str(tmp_path / "m.npy"), "--frame", "0",
                 "--quiet", "--set", "size=-1", "-o", str(tmp_path / "o")]) == 0
    assert len(list((tmp_path / "o").iterdir())) == 4
    np.save(tmp_path / "bad.npy", mask[:20])
    assert main(["segment", str(tmp_path / "f.npy"), "--mask", str(tmp_path / "bad.npy"), "--frame", "0",
                 "--quiet", "-o", str(tmp_path / "o2")]) == 2
    assert "the mask is 20x56; the frames are 40x56" in capsys.readouterr().err
    assert main(["segment", str(tmp_path / "f.npy"), "--mask", str(tmp_path / "m.npy"), "--frame", "0",
                 "--quiet", "--model", "nope", "-o", str(tmp_path / "o3")]) == 3
    assert main(["segment", str(tmp_path / "f.npy"), "--mask", str(tmp_path / "m.npy"), "--frame", "0",
                 "--quiet", "--set", "top_k=x", "-o", str(tmp_path / "o4")]) == 2

"""Builders shared by the training tests: a tiny DAVIS-layout root and a tiny training config."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from service.bench.synthetic_video import moving_ellipses
from service.io.images import encode_mask_png
from service.training.config import TrainConfig, config_from_dict
from tests.conftest import tiny_spec

BRIGHT, DARK = 200, 30


def write_sequence(root: Path, name: str, frames: list[np.ndarray], masks: list[np.ndarray]) -> None:
    """ROOT/JPEGImages/NAME/00000.png ... and ROOT/Annotations/NAME/00000.png ..."""
    (root / "JPEGImages" / name).mkdir(parents=True, exist_ok=True)
    (root / "Annotations" / name).mkdir(parents=True, exist_ok=True)
    for i, (frame, mask) in enumerate(zip(frames, masks)):
        Image.fromarray(frame).save(root / "JPEGImages" / name / f"{i:05d}.png")
        (root / "Annotations" / name / f"{i:05d}.png").write_bytes(encode_mask_png(mask.astype(np.uint8)))


def two_tone(height: int, width: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A grey image whose intensity IS its mask: two rectangles (ids 1, 2) BRIGHT on DARK."""
    rng = np.random.default_rng(seed)
    mask = np.zeros((height, width), np.uint8)
    for obj in (1, 2):
        y, x = rng.integers(0, height // 2), rng.integers(0, width // 2)
        mask[y:y + height // 3, x:x + width // 3] = obj
    return np.where(mask > 0, BRIGHT, DARK).astype(np.uint8), mask


def make_root(root: Path, sequences: int = 2, statics: int = 3, size: int = 48, prefix: str = "toy") -> Path:
    """A DAVIS-layout root with moving-ellipse sequences (8 frames, 2 objects) and one-frame
    two-tone static pairs."""
    for s in range(sequences):
        frames, masks = moving_ellipses(8, size, size + 8, objects=2, seed=s)
        write_sequence(root, f"{prefix}seq__{s:03d}", frames, masks)
    for s in range(statics):
        image, mask = two_tone(size + 4, size, seed=s)
        write_sequence(root, f"{prefix}static__{s:03d}", [image], [mask])
    return root


def tiny_config(**changes: Any) -> TrainConfig:
    """A tiny-network recipe at 32 px: 3 static + 3 sequence iterations, no evaluation."""
    spec = tiny_spec().to_dict()
    raw: dict[str, Any] = {
        "name": "tiny-trained", "seed": 3, "threads": 1, "architecture": spec, "resolution": 32,
        "batch_size": 2, "num_objects": 2, "checkpoint_every": 3, "log_every": 1,
        "optim": {"lr": 1e-3, "warmup": 0.0},
        "stages": [{"name": "static", "iterations": 3, "mix": {"static": 0.5, "synthetic": 0.5}},
                   {"name": "sequences", "iterations": 3, "mix": {"real": 0.7, "synthetic": 0.3},
                    "clip_length": [[0.0, 3], [0.5, 4]], "max_gap": [[0.0, 2]]}]}
    raw.update(changes)
    return config_from_dict(raw)


def test_builders_make_a_readable_root(tmp_path: Path) -> None:
    from service.training.sources import DataSources

    data = DataSources([make_root(tmp_path)])
    assert data.describe() == {"static_pairs": 3, "sequences": 2, "sequence_frames": 16}
    frames = data.load(data.statics[0])
    assert frames.images.shape[1:] == (52, 48, 3) and set(np.unique(frames.labels)) <= {0, 1, 2}
    assert tiny_config().total_iterations == 6

"""Training clips: determinism, masks aligned with frames after deformation/crop, objects on frame 0."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from service.errors import InvalidInput
from service.training.augment import crop_affine, elastic_field, warp
from service.training.clips import frame_indices, sequence_clip
from service.training.config import AugmentConfig
from service.training.data import ClipSampler, batches
from service.training.pseudo import pseudo_clip
from service.training.sources import DataSources, Frames
from service.training.synthetic import make_shape, render_frame, synthetic_clip
from tests.unit.test_training_fixtures import BRIGHT, DARK, make_root, tiny_config, two_tone

QUIET = AugmentConfig(intensity=0.0, noise=0.0)  # no photometric change: intensity still encodes the mask


@pytest.fixture()
def sources(tmp_path: Path) -> DataSources:
    return DataSources([make_root(tmp_path)])


def _agreement(frames: np.ndarray, labels: np.ndarray) -> float:
    """Share of pixels where 'bright' and 'labelled' agree (edges may blur by interpolation)."""
    bright = frames[..., 0] > (BRIGHT + DARK) / 2
    return float((bright == (labels > 0)).mean())


def test_same_seed_and_step_give_the_same_batch(sources: DataSources) -> None:
    cfg = tiny_config()
    a, b = ClipSampler(cfg, sources).batch(4), ClipSampler(cfg, sources).batch(4)
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels) and a.sources == b.sources
    c = ClipSampler(cfg, sources).batch(5)
    assert not torch.equal(a.images, c.images)
    other = ClipSampler(dataclasses.replace(cfg, seed=99), sources).batch(4)
    assert not torch.equal(a.images, other.images)


def test_batches_follow_the_schedule_and_mark_valid_objects(sources: DataSources) -> None:
    cfg = tiny_config()
    seen = list(batches(ClipSampler(cfg, sources), 0, cfg.total_iterations, workers=0))
    assert [b.images.shape[1] for b in seen] == [3, 3, 3, 3, 3, 4]  # sequences stage grows at 50%
    for b in seen:
        assert b.images.shape[-2:] == (32, 32) and b.labels.shape == b.images.shape[:2] + (32, 32)
        assert b.labels.max() <= b.num_objects <= cfg.num_objects
        for i in range(b.images.shape[0]):
            count = int(b.valid[i].sum())
            present = set(b.labels[i, 0].unique().tolist()) - {0}
            assert present == set(range(1, count + 1))  # every valid object is on frame 0
    assert {"static", "real", "synthetic"} <= {s for b in seen for s in b.sources}


@pytest.mark.parametrize("seed", range(6))
def test_pseudo_sequence_masks_stay_aligned_with_frames(seed: int) -> None:
    image, mask = two_tone(60, 52, seed)
    rgb = np.repeat(image[..., None], 3, 2)
    clip = pseudo_clip(Frames(rgb[None], mask[None]), 4, 48, QUIET, 2, np.random.default_rng(seed))
    assert clip is not None and clip.frames.shape == (4, 48, 48, 3) and clip.labels.shape == (4, 48, 48)
    assert _agreement(clip.frames, clip.labels) > 0.95
    assert (clip.labels[0] > 0).sum() >= QUIET.min_pixels
    moved = [(clip.labels[t] != clip.labels[0]).mean() for t in range(1, 4)]
    assert max(moved) > 0.01  # the frames really are deformed differently


def test_sequence_clips_keep_alignment_and_start_on_an_object() -> None:
    images, labels = [], []
    for t in range(10):
        _, mask = two_tone(40, 36, seed=t)
        mask[:] = mask if t > 1 else 0  # frames 0 and 1 hold no object: a clip cannot start there
        images.append(np.repeat(np.where(mask > 0, BRIGHT, DARK).astype(np.uint8)[..., None], 3, 2))
        labels.append(mask)
    data = Frames(np.stack(images), np.stack(labels))
    for seed in range(5):
        clip = sequence_clip(data, 4, 3, 32, QUIET, 2, np.random.default_rng(seed))
        assert clip is not None and _agreement(clip.frames, clip.labels) > 0.95
        assert set(np.unique(clip.labels[0])) - {0}


def test_frame_indices_gaps_direction_and_start() -> None:
    labels = np.zeros((30, 4, 4), np.uint8)
    labels[5:25] = 1
    for seed in range(20):
        idx = frame_indices(labels, 5, 3, 0.5, np.random.default_rng(seed))
        assert idx is not None and labels[idx[0]].max() > 0
        gaps = np.diff(idx)
        assert (np.abs(gaps) >= 1).all() and (np.abs(gaps) <= 3).all() and len(set(np.sign(gaps))) == 1
    assert frame_indices(np.zeros((10, 4, 4), np.uint8), 3, 2, 0.5, np.random.default_rng(0)) is None


def test_synthetic_clips_grey_colour_and_disappearing_objects() -> None:
    colour = grey = vanished = 0
    for seed in range(40):
        clip = synthetic_clip(6, 48, QUIET, 3, np.random.default_rng(seed))
        assert clip is not None and clip.frames.shape == (6, 48, 48, 3) and clip.frames.dtype == np.uint8
        assert 1 <= clip.num_objects <= 3 and clip.labels.max() <= clip.num_objects
        on_first = set(np.unique(clip.labels[0])) - {0}
        assert on_first == set(range(1, clip.num_objects + 1))
        last = set(np.unique(clip.labels[-1])) - {0}
        vanished += len(on_first - last) > 0
        is_grey = np.array_equal(clip.frames[..., 0], clip.frames[..., 1])
        grey, colour = grey + is_grey, colour + (not is_grey)
    assert grey and colour and vanished
    again = synthetic_clip(6, 48, QUIET, 3, np.random.default_rng(7))
    first = synthetic_clip(6, 48, QUIET, 3, np.random.default_rng(7))
    assert again is not None and first is not None and np.array_equal(again.frames, first.frames)


def test_synthetic_kinds_tubes_pieces_and_camera_pans() -> None:
    """The generator's object kinds render as drawn: a tube is thin, a multi-piece blob has several
    connected parts, and a camera pan moves every object together by the pan speed."""
    rng = np.random.default_rng(3)
    background = np.full((96, 96, 1), 0.5, np.float32)
    blob = make_shape(96, rng, 1, 0.5, 6)
    tube = dataclasses.replace(blob, tube=np.array([[[-1.0, 0.0], [1.0, 0.0]]]), width=2.0,
                               velocity=np.zeros(2), spin=0.0, growth=0.0, vanish_at=None,
                               centre=np.array([48.0, 48.0]), radius=20.0)
    _, label = render_frame([tube], background, 0, 96)
    rows = np.flatnonzero(label.any(1))
    assert 1 <= len(rows) <= 4 and label.sum() >= 38
    pieces = dataclasses.replace(tube, tube=None, amps=np.zeros(4), drift=np.zeros(4), radius=8.0,
                                 parts=np.array([[0.0, 0.0, 1.0], [3.0, 0.0, 0.5]]))
    _, label = render_frame([pieces], background, 0, 96)
    assert cv2.connectedComponents(label)[0] - 1 == 2
    _, moved = render_frame([pieces], background, 0, 96, pan=np.array([10.0, 0.0]))
    assert np.array_equal(np.roll(label, 10, axis=1), moved)


def test_warp_keeps_labels_integer_and_nearest() -> None:
    image, mask = two_tone(50, 50, 0)
    rgb = np.repeat(image[..., None], 3, 2)
    field = elastic_field(32, np.random.default_rng(0), 0.05, 0.1)
    img, lab = warp(rgb, mask, crop_affine((50, 50), 32, 1.2, (25, 25), 10, True), 32, field)
    assert lab.dtype == np.uint8 and set(np.unique(lab)) <= set(np.unique(mask))
    assert img.shape == (32, 32, 3)


def test_dev_roots_are_refused(tmp_path: Path) -> None:
    dev = make_root(tmp_path / "dev", statics=1, sequences=1)
    (dev / "protocols.json").write_text("{}")
    with pytest.raises(InvalidInput, match="never train"):
        DataSources([dev])
    train = make_root(tmp_path / "train", statics=1, sequences=1)
    with pytest.raises(InvalidInput, match="never train"):
        DataSources([train], forbidden=[train])


def test_worker_processes_yield_the_same_batches_in_order(sources: DataSources) -> None:
    cfg = tiny_config()
    sampler = ClipSampler(cfg, sources)
    local = list(batches(sampler, 1, 5, workers=0))
    workers = list(batches(sampler, 1, 5, workers=2))
    assert len(workers) == 4
    for a, b in zip(local, workers):
        assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels) and a.sources == b.sources

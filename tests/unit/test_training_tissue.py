"""Tissue clips: cells tile the frame, walls separate them, targets are whole cells that persist."""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest

from service.training.config import AugmentConfig
from service.training.data import ClipSampler
from service.training.tissue import cell_labels, make_field, tissue_clip
from tests.unit.test_training_fixtures import tiny_config

QUIET = AugmentConfig(intensity=0.0, noise=0.0)


def test_cells_tile_the_frame_and_walls_lie_between_cells() -> None:
    field = make_field(64, np.random.default_rng(0))
    owner, wall = cell_labels(field, 0, 64)
    assert owner.shape == wall.shape == (64, 64) and owner.min() >= 0 and owner.max() < len(field.seeds)
    assert 4 <= len(np.unique(owner)) and 0.02 < wall.mean() < 0.6
    # Where the owner changes to its right neighbour, a wall is drawn on one side or the other
    # (nearly always: a stretched warp can step over the thinnest walls).
    change = owner[:, 1:] != owner[:, :-1]
    assert (wall[:, 1:] | wall[:, :-1])[change].mean() > 0.95
    # Interior pixels (far from a wall) keep their cell between two frames: the field drifts slowly.
    later, _ = cell_labels(field, 1, 64)
    assert (owner == later).mean() > 0.8


@pytest.mark.parametrize("seed", range(8))
def test_tissue_clip_targets_are_wall_free_cells_on_frame_0(seed: int) -> None:
    clip = tissue_clip(6, 64, QUIET, 3, np.random.default_rng(seed))
    if clip is None:  # no cell big enough: the sampler draws again
        return
    assert clip.frames.shape == (6, 64, 64, 3) and clip.labels.shape == (6, 64, 64) and clip.source == "tissue"
    assert set(np.unique(clip.labels[0])) - {0} == set(range(1, clip.num_objects + 1))
    # A target is one cell (convex before the smooth warp): one connected piece, give or take a
    # pixel cut off where the warp stretches.
    for k in range(1, clip.num_objects + 1):
        _, parts, stats, _ = cv2.connectedComponentsWithStats((clip.labels[0] == k).astype(np.uint8))
        areas = stats[1:, cv2.CC_STAT_AREA]
        assert areas.max() >= 0.9 * areas.sum()


def test_tissue_targets_mostly_persist_some_end_and_clips_are_reproducible() -> None:
    kept = total = 0
    for seed in range(20):
        clip = tissue_clip(8, 64, QUIET, 2, np.random.default_rng(seed))
        if clip is None:
            continue
        for k in range(1, clip.num_objects + 1):
            total += 1
            kept += bool((clip.labels[-1] == k).any())
    assert total >= 15 and 0.5 < kept / total < 1.0
    a = tissue_clip(5, 48, QUIET, 2, np.random.default_rng(11))
    b = tissue_clip(5, 48, QUIET, 2, np.random.default_rng(11))
    assert a is not None and b is not None
    assert np.array_equal(a.frames, b.frames) and np.array_equal(a.labels, b.labels)


def test_a_stage_can_mix_in_tissue_clips() -> None:
    cfg = tiny_config(stages=[{"name": "tissue", "iterations": 4, "mix": {"tissue": 1.0}}])
    batch = ClipSampler(cfg, None).batch(2)
    assert batch.sources == ("tissue", "tissue") and batch.images.shape[-2:] == (32, 32)
    assert dataclasses.replace(cfg).stages[0].mix == (("tissue", 1.0),)

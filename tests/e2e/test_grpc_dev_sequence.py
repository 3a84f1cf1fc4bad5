"""A real dev sequence through the gRPC service: Track with the mask on a middle frame, via segment_remote."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from service.client import segment_remote_with_model
from service.io.images import read_frames, read_mask
from service.settings import Settings
from tests.conftest import DATA_DEV
from tests.integration.grpc_harness import grpc_served

SEQ = "hippocampus__003"


@pytest.fixture()
def dev_seq() -> tuple[Path, Path]:
    frames, masks = DATA_DEV / "JPEGImages" / SEQ, DATA_DEV / "Annotations" / SEQ
    if not frames.is_dir() or not masks.is_dir():
        pytest.skip(f"../shared/data/dev/{SEQ} is not present")
    return frames, masks


def _middle_annotated(masks: Path, count: int) -> int:
    """The annotated frame nearest the middle that holds at least one object."""
    order = sorted(range(count), key=lambda t: abs(t - count // 2))
    return next(t for t in order if read_mask(masks / f"{t:05d}.png").any())


def test_track_dev_sequence_from_a_middle_frame(dev_seq: tuple[Path, Path], embedded_settings: Settings) -> None:
    frames_dir, masks_dir = dev_seq
    frames = read_frames(frames_dir)
    k = _middle_annotated(masks_dir, len(frames))
    mask = read_mask(masks_dir / f"{k:05d}.png")
    progress: list[tuple[int, int]] = []

    async def scenario() -> tuple[list[np.ndarray], str | None]:
        async with grpc_served(embedded_settings) as s:
            # the client is blocking (asyncio.run inside): run it in a thread, the server stays on this loop
            return await asyncio.to_thread(segment_remote_with_model, f"grpc://127.0.0.1:{s.port}", frames, mask,
                                           k, "both", {"top_k": "10"},
                                           lambda done, total: progress.append((done, total)))

    labels, model = asyncio.run(asyncio.wait_for(scenario(), 60))
    assert model == "tiny:1"  # the server names the model that computed the masks
    assert 0 < k < len(frames) - 1
    assert len(labels) == len(frames)
    assert all(m.shape == f.shape[:2] for m, f in zip(labels, frames))
    assert (labels[k] == mask).all()  # the annotated frame comes back exactly as drawn
    assert progress[-1] == (len(frames), len(frames)) and len(progress) == len(frames)
    assert set(np.unique(np.concatenate([m.ravel() for m in labels]))) <= {0, *np.unique(mask).tolist()}

"""Stage-0 pseudo-sequences: one static image + mask turned into T frames (XMem's static stage).

Every frame is the same base crop seen through its own random affine (rotation, shear, scale,
translation) and elastic deformation; image and mask go through the identical mapping. Frames
are drawn independently around the base crop as XMem does, so consecutive frames differ by a
realistic-but-large motion rather than a smooth drift.
"""

from __future__ import annotations

import numpy as np

from service.training.augment import crop_affine, elastic_field, is_colour, jitter_affine, warp
from service.training.clips import CROP_TRIES, RawClip, finish, object_centre
from service.training.config import AugmentConfig
from service.training.sources import Frames


def pseudo_clip(data: Frames, length: int, crop: int, aug: AugmentConfig, max_objects: int,
                rng: np.random.Generator) -> RawClip | None:
    """A clip of ``length`` deformed views of ``data``'s first frame (image [H, W, 3], mask [H, W])."""
    image, label = data.images[0], data.labels[0]
    colour = is_colour(image)
    for attempt in range(CROP_TRIES + 1):
        last = attempt == CROP_TRIES
        base = _base(label, crop, aug, rng, plain=last)
        frames, labels = [], []
        for _ in range(length):
            move = jitter_affine(crop, rng, aug.rotate, aug.shear, aug.translate, aug.frame_scale)
            field = elastic_field(crop, rng, aug.elastic_alpha, aug.elastic_sigma)
            img, lab = warp(image, label, move @ base, crop, field)
            frames.append(img)
            labels.append(lab)
        clip = finish(np.stack(frames), np.stack(labels), "static", aug, max_objects, rng, colour)
        if clip is not None:
            return clip
    return None


def _base(label: np.ndarray, crop: int, aug: AugmentConfig, rng: np.random.Generator,
          plain: bool) -> np.ndarray:
    """The shared crop; ``plain`` (last resort) shows the whole shorter side around the centre."""
    h, w = label.shape
    if plain:
        return crop_affine((h, w), crop, 1.0, (w / 2, h / 2))
    zoom = float(np.exp(rng.uniform(*np.log(aug.static_zoom))))
    return crop_affine((h, w), crop, zoom, object_centre(label, rng), rng.uniform(-aug.rotate, aug.rotate),
                       rng.random() < aug.flip)

"""Checks on user-supplied frames and masks, raising errors that name the problem."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from service.errors import InvalidFrames, InvalidMask


def check_frame(frame: np.ndarray, index: int, shape: tuple[int, int] | None = None) -> np.ndarray:
    """Return the frame as uint8 [H, W] or [H, W, C]; floats are taken as [0, 1] intensities."""
    if not isinstance(frame, np.ndarray):
        raise InvalidFrames(f"frame {index} is not an array")
    if frame.ndim not in (2, 3) or (frame.ndim == 3 and frame.shape[2] not in (1, 3, 4)):
        raise InvalidFrames(f"frame {index} has shape {frame.shape}; expected HxW or HxWx(1|3|4)")
    if frame.shape[0] < 1 or frame.shape[1] < 1:
        raise InvalidFrames(f"frame {index} is empty ({frame.shape})")
    if shape is not None and tuple(frame.shape[:2]) != shape:
        raise InvalidFrames(f"frame {index} is {frame.shape[0]}x{frame.shape[1]} but the sequence is "
                            f"{shape[0]}x{shape[1]}: all frames must have one size")
    if frame.dtype == np.uint8:
        return frame
    if np.issubdtype(frame.dtype, np.floating):
        if not np.isfinite(frame).all():
            raise InvalidFrames(f"frame {index} contains NaN or infinite pixel values")
        scaled: np.ndarray = (np.clip(frame, 0.0, 1.0) * 255 + 0.5).astype(np.uint8)
        return scaled
    if np.issubdtype(frame.dtype, np.integer) or frame.dtype == np.bool_:
        if frame.min() < 0 or frame.max() > 255:
            raise InvalidFrames(f"frame {index} has integer values outside 0..255 ({frame.dtype})")
        return frame.astype(np.uint8)
    raise InvalidFrames(f"frame {index} has unsupported dtype {frame.dtype}")


def check_frames(frames: Sequence[np.ndarray]) -> list[np.ndarray]:
    if len(frames) == 0:
        raise InvalidFrames("the sequence has no frames")
    first = check_frame(frames[0], 0)
    shape = (int(first.shape[0]), int(first.shape[1]))
    return [first] + [check_frame(f, i, shape) for i, f in enumerate(frames[1:], start=1)]


def check_mask(mask: np.ndarray, shape: tuple[int, int], max_objects: int,
               allow_empty: bool = False) -> tuple[np.ndarray, tuple[int, ...]]:
    """Validate an index mask [H, W]; return it as int64 and its sorted object labels."""
    if not isinstance(mask, np.ndarray):
        raise InvalidMask("the mask is not an array")
    if mask.ndim == 3 and mask.shape[2] == 1:
        mask = mask[:, :, 0]
    if mask.ndim != 2:
        raise InvalidMask(f"the mask has shape {mask.shape}; expected a 2-D index mask HxW")
    if tuple(mask.shape) != tuple(shape):
        raise InvalidMask(f"the mask is {mask.shape[0]}x{mask.shape[1]} but the frames are {shape[0]}x{shape[1]}")
    if np.issubdtype(mask.dtype, np.floating):
        if not np.isfinite(mask).all() or not np.equal(np.mod(mask, 1), 0).all():
            raise InvalidMask("the mask must hold whole-number labels (0 = background)")
    elif not (np.issubdtype(mask.dtype, np.integer) or mask.dtype == np.bool_):
        raise InvalidMask(f"the mask has unsupported dtype {mask.dtype}")
    labels = mask.astype(np.int64)
    if labels.min() < 0:
        raise InvalidMask("the mask has negative labels")
    objects = tuple(int(v) for v in np.unique(labels) if v != 0)
    if not objects and not allow_empty:
        raise InvalidMask("the mask is empty: draw at least one object (labels 1..K)")
    if len(objects) > max_objects:
        raise InvalidMask(f"the mask has {len(objects)} objects; this model allows at most {max_objects}")
    return labels, objects

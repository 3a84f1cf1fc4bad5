"""Slice order and per-frame header values of a DICOM series (single-frame or enhanced multi-frame)."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import SupportsFloat, SupportsIndex

import numpy as np
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from service.errors import InvalidFrames
from service.io.medical.intensity import Rescale, Window

log = logging.getLogger(__name__)

_ORIENTATION_TOL = 1e-3  # direction cosines that differ by more than this are a different orientation
_SPACING_REL_TOL = 0.1   # a gap more than 10 % off the median gap means a missing or extra slice
_SPACING_ABS_TOL = 0.01  # mm; absorbs rounding in stored positions


@dataclass(frozen=True)
class Ordering:
    """Display order of frames (indices into the source list) and the slice spacing in mm (None: unknown)."""

    order: tuple[int, ...]
    spacing: float | None


def order_by_position(positions: np.ndarray, orientations: np.ndarray) -> Ordering:
    """Positions [N, 3] and orientations [N, 6] -> order along the slice normal, with consistency checks."""
    if np.abs(orientations - orientations[0]).max(initial=0.0) > _ORIENTATION_TOL:
        raise InvalidFrames("the slices have inconsistent orientations (ImageOrientationPatient differs); "
                            "send one acquisition")
    row, col = orientations[0, :3], orientations[0, 3:]
    normal = np.cross(row, col)
    if not np.isclose(np.linalg.norm(normal), 1.0, atol=1e-2):
        raise InvalidFrames("ImageOrientationPatient does not hold two orthogonal unit vectors")
    along = positions @ normal
    order = np.argsort(along, kind="stable")
    if len(order) < 2:
        return Ordering(tuple(int(i) for i in order), None)
    gaps = np.diff(along[order])
    if gaps.min() < _SPACING_ABS_TOL:
        raise InvalidFrames("two slices share one position (duplicate instances or two acquisitions mixed)")
    median = float(np.median(gaps))
    if np.abs(gaps - median).max() > _SPACING_REL_TOL * median + _SPACING_ABS_TOL:
        raise InvalidFrames(f"inconsistent slice spacing: gaps from {gaps.min():.2f} to {gaps.max():.2f} mm "
                            "(missing slices?)")
    return Ordering(tuple(int(i) for i in order), median)


def _floats(value: object, n: int) -> list[float] | None:
    if not isinstance(value, Iterable):
        return None
    try:
        out = [float(v) for v in value]
    except (TypeError, ValueError):
        return None
    return out if len(out) == n else None


def order_single_frames(datasets: Sequence[Dataset]) -> Ordering:
    """Order a single-frame series by ImagePositionPatient on the normal; InstanceNumber as the fallback."""
    ipps = [_floats(ds.get("ImagePositionPatient"), 3) for ds in datasets]
    iops = [_floats(ds.get("ImageOrientationPatient"), 6) for ds in datasets]
    if all(p is not None for p in ipps) and all(o is not None for o in iops):
        return order_by_position(np.array(ipps, dtype=np.float64), np.array(iops, dtype=np.float64))
    # No geometry (secondary capture, some ultrasound): the scanner's numbering is the best order left.
    log.info("dicom series without plane geometry: ordering by instance number")
    numbers = [_int_or_none(ds.get("InstanceNumber")) for ds in datasets]
    keyed = sorted(range(len(datasets)), key=lambda i: (numbers[i] is None, numbers[i] or 0, i))
    return Ordering(tuple(keyed), _declared_spacing(datasets[0]))


def order_multiframe(ds: Dataset) -> Ordering:
    """Order the frames of one enhanced instance by their plane positions; stored order for cine loops."""
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    per_frame = ds.get("PerFrameFunctionalGroupsSequence") or []
    ipps = [_floats(_group_value(ds, i, "PlanePositionSequence", "ImagePositionPatient"), 3)
            for i in range(frames)] if len(per_frame) == frames else []
    iops = [_floats(_group_value(ds, i, "PlaneOrientationSequence", "ImageOrientationPatient"), 6)
            for i in range(frames)] if ipps else []
    if ipps and all(p is not None for p in ipps) and all(o is not None for o in iops):
        return order_by_position(np.array(ipps, dtype=np.float64), np.array(iops, dtype=np.float64))
    return Ordering(tuple(range(frames)), _declared_spacing(ds))


def _group_value(ds: Dataset, frame: int, macro: str, keyword: str) -> object:
    """A functional-group value for one frame: per-frame group first, then the shared one."""
    per_frame = ds.get("PerFrameFunctionalGroupsSequence") or []
    shared = ds.get("SharedFunctionalGroupsSequence") or []
    items = ([per_frame[frame]] if frame < len(per_frame) else []) + list(shared)[:1]
    for item in items:
        seq = item.get(macro)
        if seq and keyword in seq[0]:
            return seq[0].get(keyword)
    return None


def _int_or_none(value: object) -> int | None:
    if not isinstance(value, (int, float, str)):  # pydicom's IS is an int subclass
        return None
    try:
        return int(value)
    except ValueError:
        return None


def _declared_spacing(ds: Dataset) -> float | None:
    for keyword in ("SpacingBetweenSlices", "SliceThickness"):
        value = float_or_none(ds.get(keyword))
        if value:
            return value
    return None


def float_or_none(value: object) -> float | None:
    if value is None or value == "":
        return None
    try:
        if isinstance(value, (list, tuple, MultiValue)):
            value = value[0]
        if isinstance(value, (str, bytes, bytearray, SupportsFloat, SupportsIndex)):  # what float() takes
            return float(value)
    except (TypeError, ValueError, IndexError):
        pass
    return None


def rescale_of(ds: Dataset, frame: int | None = None) -> Rescale:
    """(slope, intercept) of one instance, or of one frame of an enhanced instance."""
    if frame is not None:
        slope = _group_value(ds, frame, "PixelValueTransformationSequence", "RescaleSlope")
        intercept = _group_value(ds, frame, "PixelValueTransformationSequence", "RescaleIntercept")
    else:
        slope, intercept = ds.get("RescaleSlope"), ds.get("RescaleIntercept")
    return (float_or_none(slope) or 1.0, float_or_none(intercept) or 0.0)


def window_of(ds: Dataset, frame: int | None = None) -> Window | None:
    """The instance's (first) stored VOI window, or None; enhanced instances keep it in FrameVOILUTSequence."""
    if frame is not None:
        centre = _group_value(ds, frame, "FrameVOILUTSequence", "WindowCenter")
        width = _group_value(ds, frame, "FrameVOILUTSequence", "WindowWidth")
    else:
        centre, width = ds.get("WindowCenter"), ds.get("WindowWidth")
    c, w = float_or_none(centre), float_or_none(width)
    if c is None or w is None or w <= 0:
        return None
    return Window(c, w)


def pixel_spacing_of(ds: Dataset) -> tuple[float, float] | None:
    """(row mm, column mm) from PixelSpacing, or the shared PixelMeasuresSequence of enhanced instances."""
    value = ds.get("PixelSpacing") or _group_value(ds, 0, "PixelMeasuresSequence", "PixelSpacing")
    pair = _floats(value, 2) if value is not None else None
    return (pair[0], pair[1]) if pair else None

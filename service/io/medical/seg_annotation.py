"""A DICOM SEG that covers ONE slice of a series -> the annotation mask for that frame.

Frames are matched to the series through each SEG frame's DerivationImageSequence (the referenced SOP
instance and frame), which both BINARY and LABELMAP segmentations written by highdicom and most viewers
carry. Segment numbers become object ids.
"""

from __future__ import annotations

import io
from collections.abc import Iterator

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from service.errors import InvalidMask
from service.io.medical.dicom_files import looks_like_dicom
from service.io.medical.volume import Annotation, Volume

SEG_SOP_CLASSES = ("1.2.840.10008.5.1.4.1.1.66.4", "1.2.840.10008.5.1.4.1.1.66.7")


def is_seg(data: bytes) -> bool:
    """True for a Part-10 file whose SOP class is (Label Map) Segmentation Storage."""
    if not looks_like_dicom(data):
        return False
    try:
        ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True, specific_tags=["SOPClassUID"])
    except (InvalidDicomError, EOFError, ValueError, OSError, KeyError, TypeError, AttributeError):
        return False
    return str(ds.get("SOPClassUID", "")) in SEG_SOP_CLASSES


def read_seg_annotation(data: bytes, volume: Volume) -> Annotation:
    """SEG bytes + the DICOM volume it annotates -> Annotation(frame index, mask [H, W] of segment numbers)."""
    seg = _parse(data)
    if volume.dicom is None:
        raise InvalidMask("a DICOM SEG annotation needs the DICOM series it refers to")
    if (int(seg.Rows), int(seg.Columns)) != volume.shape:
        raise InvalidMask(f"the DICOM SEG is {seg.Rows}x{seg.Columns}; the series is "
                          f"{volume.shape[0]}x{volume.shape[1]}")
    index = _frame_index(volume)
    masks: dict[int, np.ndarray] = {}
    matched = 0
    for frame_pixels, ref, segment in _frames(seg):
        t = index.get(ref)
        if t is None:
            continue
        matched += 1
        mask = masks.setdefault(t, np.zeros(volume.shape, dtype=np.int64))
        if segment is None:  # LABELMAP: pixel values are segment numbers
            mask[frame_pixels > 0] = frame_pixels[frame_pixels > 0]
        else:
            mask[frame_pixels > 0] = segment
    return _one_frame(masks, matched)


def _parse(data: bytes) -> Dataset:
    if not looks_like_dicom(data):
        raise InvalidMask("the annotation is not a DICOM file")
    try:
        seg = pydicom.dcmread(io.BytesIO(data))
    except (InvalidDicomError, EOFError, ValueError, OSError, KeyError, TypeError, AttributeError) as exc:
        raise InvalidMask(f"the DICOM SEG is corrupt or truncated ({type(exc).__name__})") from None
    if str(seg.get("SOPClassUID", "")) not in SEG_SOP_CLASSES:
        raise InvalidMask("the DICOM annotation is not a Segmentation object")
    if str(seg.get("SegmentationType", "")) not in ("BINARY", "LABELMAP", "FRACTIONAL"):
        raise InvalidMask("the DICOM SEG has an unknown segmentation type")
    return seg


def _frame_index(volume: Volume) -> dict[tuple[str, int], int]:
    """(referenced SOP instance UID, 1-based frame number) -> display frame index."""
    assert volume.dicom is not None
    src = volume.dicom
    return {(str(src.datasets[d].SOPInstanceUID), f + 1): t for t, (d, f) in enumerate(src.frame_refs)}


def _frames(seg: Dataset) -> Iterator[tuple[np.ndarray, tuple[str, int], int | None]]:
    """Each SEG frame as (pixels [H, W], referenced source frame, segment number or None for LABELMAP)."""
    try:
        pixels = np.asarray(seg.pixel_array)
    except Exception as exc:  # noqa: BLE001 - decoder plugins raise anything; report it as a bad mask
        raise InvalidMask(f"the DICOM SEG pixel data cannot be decoded ({type(exc).__name__})") from None
    count = int(seg.get("NumberOfFrames", 1) or 1)
    pixels = pixels.reshape((count,) + pixels.shape[-2:])
    groups = seg.get("PerFrameFunctionalGroupsSequence") or []
    if len(groups) != count:
        raise InvalidMask("the DICOM SEG lacks per-frame references to its source images")
    labelmap = str(seg.SegmentationType) == "LABELMAP"
    shared = (seg.get("SharedFunctionalGroupsSequence") or [Dataset()])[0]
    fractional_max = int(seg.get("MaximumFractionalValue", 1) or 1)
    for i, group in enumerate(groups):
        frame = pixels[i]
        if str(seg.SegmentationType) == "FRACTIONAL":  # above one half counts as inside
            frame = (frame.astype(np.float32) / fractional_max > 0.5).astype(np.uint8)
        segment = None if labelmap else _segment_number(group, shared)
        for ref in _references(group):
            yield frame.astype(np.int64), ref, segment


def _segment_number(group: Dataset, shared: Dataset) -> int:
    """A BINARY/FRACTIONAL frame's segment: in its own functional groups, or in the shared ones when every
    frame has the same (highdicom writes a single-segment SEG that way)."""
    ident = group.get("SegmentIdentificationSequence") or shared.get("SegmentIdentificationSequence")
    if not ident:
        raise InvalidMask("the DICOM SEG does not say which segment its frames belong to")
    return int(ident[0].ReferencedSegmentNumber)


def _references(group: Dataset) -> Iterator[tuple[str, int]]:
    for derivation in group.get("DerivationImageSequence") or []:
        for source in derivation.get("SourceImageSequence") or []:
            numbers = source.get("ReferencedFrameNumber")
            frames = [1] if numbers is None else ([int(numbers)] if isinstance(numbers, int)
                                                  else [int(n) for n in numbers])
            for number in frames:
                yield str(source.ReferencedSOPInstanceUID), number


def _one_frame(masks: dict[int, np.ndarray], matched: int) -> Annotation:
    if matched == 0:
        raise InvalidMask("the DICOM SEG references no frame of this series (a mask for another series?)")
    labelled = sorted(t for t, m in masks.items() if m.any())
    if not labelled:
        raise InvalidMask("the DICOM SEG holds no labelled pixel on this series")
    if len(labelled) > 1:
        raise InvalidMask(f"the DICOM SEG covers {len(labelled)} frames; annotate exactly one frame")
    return Annotation(mask=masks[labelled[0]], frame=labelled[0])

"""Read one DICOM series (folder, zip, instance bytes) into a :class:`Volume` of uint8 display frames.

Slices are ordered along the slice normal (InstanceNumber as the fallback), rescaled to modality units,
then windowed (CT) or scaled by percentiles (MR and others); 8-bit grey and colour images (ultrasound,
endoscopy, secondary capture) keep their pixels. Enhanced multi-frame and cine instances are read too.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset
from pydicom.pixels import get_decoder
from pydicom.uid import UID

from service.errors import InvalidFrames, TooLarge
from service.io.medical import dicom_geometry as geo
from service.io.medical.dicom_files import as_blobs, parse_instances
from service.io.medical.intensity import DEFAULT_INTENSITY, IntensityOptions, Rescale, Window, display_frames
from service.io.medical.volume import DEFAULT_LIMITS, DicomSource, ReadLimits, Volume

log = logging.getLogger(__name__)

_STORAGE = "1.2.840.10008.5.1.4.1.1."
# Storage SOP classes that hold no image: SR, presentation states, SEG and other derived objects,
# waveforms, encapsulated documents, RT objects other than RT Image.
_NON_IMAGE = ("88.", "11.", "66.", "67", "68.", "9.", "104.", "78.", "79.", "90.", "91.", "200.", "201.")
_PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")


def read_dicom_series(source: Path | bytes | Sequence[bytes], options: IntensityOptions = DEFAULT_INTENSITY,
                      limits: ReadLimits = DEFAULT_LIMITS) -> Volume:
    """A folder, a zip (bytes), one instance or a list of instances (bytes) -> Volume (kind "dicom")."""
    return series_to_volume(parse_instances(as_blobs(source, limits), limits), options, limits)


def series_to_volume(datasets: list[Dataset], options: IntensityOptions = DEFAULT_INTENSITY,
                     limits: ReadLimits = DEFAULT_LIMITS) -> Volume:
    """Parsed instances of one series -> Volume; every bad-input case raises InvalidFrames or TooLarge.

    The datasets become the Volume's headers: their pixel data is deleted once decoded.
    """
    check_series(datasets, limits)
    multiframe = _is_multiframe(datasets[0])
    if multiframe:
        ds = datasets[0]
        ordering = geo.order_multiframe(ds)
        stack = _decode(ds, 1)
        single_frame_ndim = 3 if int(ds.get("SamplesPerPixel", 1)) == 3 else 2
        stack = stack[None] if stack.ndim == single_frame_ndim else stack  # pydicom drops F when F == 1
        raw = [stack[i] for i in ordering.order]
        rescale = [geo.rescale_of(ds, i) for i in ordering.order]
        own = geo.window_of(ds, ordering.order[len(ordering.order) // 2])
        kept: tuple[Dataset, ...] = (ds,)
        refs = tuple((0, i) for i in ordering.order)
    else:
        ordering = geo.order_single_frames(datasets)
        kept = tuple(datasets[i] for i in ordering.order)
        raw = [_decode(ds, i + 1) for i, ds in zip(ordering.order, kept)]
        rescale = [geo.rescale_of(ds) for ds in kept]
        own = geo.window_of(kept[len(kept) // 2])
        refs = tuple((t, 0) for t in range(len(kept)))
    if len(raw) > limits.max_frames:
        raise TooLarge(f"the series holds {len(raw)} frames; the limit is {limits.max_frames}")
    frames = _to_uint8(raw, rescale, kept[0], options, own)
    for ds in kept:  # headers stay for the SEG writer; pixels would only hold memory
        for keyword in _PIXEL_KEYWORDS:
            if keyword in ds:
                del ds[keyword]
    modality = str(kept[0].get("Modality", "OT"))
    log.info("dicom series read", extra={"frames": len(frames), "modality": modality, "multiframe": multiframe})
    source = DicomSource(datasets=kept, frame_refs=refs, modality=modality, multiframe=multiframe)
    return Volume(frames=frames, kind="dicom", dicom=source, fps=_fps(kept[0]) if multiframe else None,
                  spacing=_spacing(kept[0], ordering.spacing))


def check_series(datasets: Sequence[Dataset], limits: ReadLimits) -> None:
    """Refuse what cannot become one image volume, naming the problem (never an identifier)."""
    for position, ds in enumerate(datasets, start=1):
        sop = str(ds.SOPClassUID)
        if _is_non_image(sop):
            raise InvalidFrames(f"instance {position} is a {UID(sop).name} object, not an image; "
                                "send the image series itself")
        if not any(k in ds for k in _PIXEL_KEYWORDS):
            raise InvalidFrames(f"instance {position} has no pixel data (truncated, or not an image)")
    if len({str(ds.get("SeriesInstanceUID", "")) for ds in datasets}) > 1:
        count = len({str(ds.get("SeriesInstanceUID", "")) for ds in datasets})
        raise InvalidFrames(f"the upload mixes {count} series; send one series")
    multi = sum(_is_multiframe(ds) for ds in datasets)
    if multi > 1:
        raise InvalidFrames(f"the series holds {multi} multi-frame instances; send one of them")
    if multi and len(datasets) > 1:
        raise InvalidFrames("the series mixes a multi-frame instance with single-frame instances")
    sizes = {(int(ds.get("Rows", 0)), int(ds.get("Columns", 0)), int(ds.get("SamplesPerPixel", 1)))
             for ds in datasets}
    if len(sizes) > 1:
        raise InvalidFrames(f"the slices differ in size or colour ({len(sizes)} kinds); send one acquisition")
    rows, cols, _ = sizes.pop()
    if rows * cols > limits.max_frame_pixels:
        raise TooLarge(f"frames of {rows}x{cols} pixels exceed the limit of {limits.max_frame_pixels} pixels")


def _is_non_image(sop: str) -> bool:
    if not sop.startswith(_STORAGE):
        return False
    rest = sop[len(_STORAGE):]
    if rest.startswith("481."):  # radiotherapy: only RT Image (481.1) carries an image
        return rest != "481.1"
    return rest == "66" or rest.startswith(_NON_IMAGE)


def _is_multiframe(ds: Dataset) -> bool:
    return int(ds.get("NumberOfFrames", 1) or 1) > 1 or "PerFrameFunctionalGroupsSequence" in ds


def _decode(ds: Dataset, position: int) -> np.ndarray:
    """Pixel data of one instance -> array [H, W], [H, W, 3], [F, H, W] or [F, H, W, 3] (colour as RGB)."""
    ts = UID(str(ds.file_meta.get("TransferSyntaxUID", "1.2.840.10008.1.2")))
    try:
        decoder = get_decoder(ts)
    except (NotImplementedError, ValueError):
        raise InvalidFrames(f"instance {position} uses transfer syntax {ts.name}, which this server cannot "
                            "decode; send it uncompressed") from None
    if not decoder.is_available:
        raise InvalidFrames(f"instance {position} uses transfer syntax {ts.name}, and no decoder for it is "
                            "installed here; send it uncompressed") from None
    try:
        return np.asarray(ds.pixel_array)
    except Exception as exc:  # noqa: BLE001 - decoder plugins raise anything; report it as bad input
        raise InvalidFrames(f"instance {position}: pixel data cannot be decoded, it is truncated or corrupt "
                            f"({type(exc).__name__})") from None


def _to_uint8(raw: list[np.ndarray], rescale: list[Rescale], ds: Dataset, options: IntensityOptions,
              own: Window | None) -> list[np.ndarray]:
    """Decoded frames -> uint8 [H, W] (grey) or [H, W, 3] (colour)."""
    is_ct = str(ds.get("Modality", "")) == "CT"
    if int(ds.get("SamplesPerPixel", 1)) == 3:
        shift = max(int(ds.get("BitsStored", 8)) - 8, 0)
        return [np.ascontiguousarray((r >> shift) if shift else r).astype(np.uint8) for r in raw]
    plain_8bit = int(ds.get("BitsStored", 8)) <= 8 and all(s == (1.0, 0.0) for s in rescale)
    if plain_8bit and not is_ct and options.explicit_window() is None:
        # Ultrasound, endoscopy and screenshots are already display values: stretching would distort them.
        frames = [r.astype(np.uint8) for r in raw]
    else:
        frames = display_frames(raw, rescale, options, own if is_ct else None, is_ct)
    if str(ds.get("PhotometricInterpretation", "")) == "MONOCHROME1":  # 0 means white there
        frames = [255 - f for f in frames]
    return frames


def _fps(ds: Dataset) -> float | None:
    frame_time = geo.float_or_none(ds.get("FrameTime"))
    if frame_time and frame_time > 0:
        return 1000.0 / frame_time
    rate = geo.float_or_none(ds.get("RecommendedDisplayFrameRate")) or geo.float_or_none(ds.get("CineRate"))
    return rate or None


def _spacing(ds: Dataset, slice_mm: float | None) -> tuple[float, float, float] | None:
    pixel = geo.pixel_spacing_of(ds)
    if pixel is None:
        return None
    return (pixel[0], pixel[1], slice_mm or 0.0)

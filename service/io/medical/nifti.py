"""NIfTI volumes (.nii, .nii.gz) in and labelmaps out, with the input's affine and header kept.

Frames are cut from the volume reoriented to closest-canonical RAS and shown in radiological view
(patient right on the image's left, anterior / superior at the top): ``frame = slab.T[::-1, ::-1]``.
Writers undo exactly that, so a labelmap lands on the input's voxel grid.
"""

from __future__ import annotations

import gzip
import io
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel.filebasedimages import ImageFileError
from nibabel.orientations import apply_orientation, io_orientation, ornt_transform

from service.errors import InvalidFrames, InvalidInput, InvalidMask, TooLarge
from service.io.medical.intensity import DEFAULT_INTENSITY, IntensityOptions, display_frames
from service.io.medical.volume import DEFAULT_LIMITS, Annotation, NiftiSource, ReadLimits, Volume

GZIP_MAGIC = b"\x1f\x8b"
_IDENTITY = np.array([[0, 1], [1, 1], [2, 1]], dtype=float)


def looks_like_nifti(data: bytes) -> bool:
    """NIfTI-1 ('n+1') or NIfTI-2 ('n+2') magic in an uncompressed header."""
    return (len(data) >= 348 and data[344:347] == b"n+1") or (len(data) >= 540 and data[4:7] == b"n+2")


def load_image(data: bytes | Path, limits: ReadLimits, error: type[InvalidInput]) -> nib.Nifti1Image:
    """Bytes (optionally gzip) or a path -> a nibabel image held in memory."""
    raw = data.read_bytes() if isinstance(data, Path) else bytes(data)
    if raw.startswith(GZIP_MAGIC):
        raw = _gunzip(raw, limits.max_bytes, error)
    if not looks_like_nifti(raw):
        raise error("the file is not a NIfTI image (no n+1/n+2 magic)")
    kind = nib.Nifti2Image if raw[4:7] == b"n+2" else nib.Nifti1Image
    try:
        return kind.from_bytes(raw)
    except (ValueError, OSError, EOFError, ImageFileError) as exc:
        raise error(f"the NIfTI image is corrupt or truncated ({type(exc).__name__})") from None


def _gunzip(data: bytes, limit: int, error: type[InvalidInput]) -> bytes:
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(data, limit + 1)  # bounded: a gzip bomb stops at the limit
    except zlib.error:
        raise error("the .nii.gz is not valid gzip data") from None
    if len(out) > limit:
        raise TooLarge(f"the NIfTI image unpacks to more than {limit} bytes")
    if not inflater.eof:
        raise error("the .nii.gz is truncated")
    return out


def array3d(img: nib.Nifti1Image, error: type[InvalidInput]) -> np.ndarray:
    """The voxel array [X, Y, Z] of an image in memory (NIfTI, or NRRD read into one), scaled by the header's
    slope/intercept; 2-D gains Z = 1."""
    try:
        data = np.asanyarray(img.dataobj)
    except (ValueError, OSError, EOFError) as exc:
        raise error(f"the NIfTI voxel data cannot be read ({type(exc).__name__})") from None
    while data.ndim > 3 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim == 2:
        data = data[..., None]
    if data.ndim != 3:
        raise error(f"the NIfTI image has shape {data.shape}; only 3-D volumes (or 4-D with one volume) are read")
    return data


def _canonical_axis(ornt: np.ndarray, axis: int | None) -> tuple[int, int]:
    """(file axis, canonical axis) to slice along; default: the file axis closest to superior-inferior."""
    if axis is None:
        axis = int(np.flatnonzero(ornt[:, 0] == 2)[0])
    if axis not in (0, 1, 2):
        raise InvalidInput(f"slice axis must be 0, 1 or 2, not {axis}")
    return axis, int(ornt[axis, 0])


def _frames_of(canon: np.ndarray, c: int) -> list[np.ndarray]:
    """Canonical volume -> display slices [H, W] along canonical axis ``c`` (radiological view)."""
    return [_slab(canon, c, k) for k in range(canon.shape[c])]


def _slab(canon: np.ndarray, c: int, k: int) -> np.ndarray:
    """Slice k along canonical axis c in radiological view [H, W]. Basic indexing, not np.take: the
    reoriented volume is a strided view, and np.take copies all of it for every slice (a 512 x 512 x 300 CT
    took 5 minutes to read that way, 1 s this way)."""
    index: list[slice | int] = [slice(None)] * 3
    index[c] = k
    return np.ascontiguousarray(canon[tuple(index)].T[::-1, ::-1])


def read_nifti(data: bytes | Path, axis: int | None = None, options: IntensityOptions = DEFAULT_INTENSITY,
               limits: ReadLimits = DEFAULT_LIMITS) -> Volume:
    """A NIfTI volume -> Volume (kind "nifti") sliced along file axis ``axis`` (default: closest to axial).

    Intensities: explicit window or preset when given (the caller knows it is CT), else percentile min-max.
    """
    return volume_from_image(load_image(data, limits, InvalidFrames), axis, options, limits)


def volume_from_image(img: nib.Nifti1Image, axis: int | None = None, options: IntensityOptions = DEFAULT_INTENSITY,
                      limits: ReadLimits = DEFAULT_LIMITS) -> Volume:
    """An image in memory (NIfTI, or NRRD read into one) -> Volume (kind "nifti"); see read_nifti."""
    values = array3d(img, InvalidFrames)
    ornt = io_orientation(img.affine)
    file_axis, c = _canonical_axis(ornt, axis)
    canon = apply_orientation(values, ornt)
    if canon.shape[c] > limits.max_frames:
        raise TooLarge(f"the volume has {canon.shape[c]} slices; the limit is {limits.max_frames}")
    raw = _frames_of(canon, c)
    if raw[0].size > limits.max_frame_pixels:
        raise TooLarge(f"slices of {raw[0].shape} exceed the limit of {limits.max_frame_pixels} pixels")
    frames = display_frames(raw, [(1.0, 0.0)] * len(raw), options, None, True)
    source = NiftiSource(affine=np.array(img.affine), header=img.header.copy(), shape=tuple(values.shape),
                         ornt=ornt, axis=file_axis)
    return Volume(frames=frames, kind="nifti", nifti=source, spacing=_spacing(img, ornt, c))


def _spacing(img: nib.Nifti1Image, ornt: np.ndarray, c: int) -> tuple[float, float, float]:
    zooms = [float(z) for z in img.header.get_zooms()[:3]] + [1.0] * (3 - len(img.header.get_zooms()[:3]))
    canon = [0.0, 0.0, 0.0]
    for file_axis, (target, _) in enumerate(ornt):
        canon[int(target)] = zooms[file_axis]
    rest = [a for a in range(3) if a != c]
    return (canon[rest[1]], canon[rest[0]], canon[c])  # frame rows follow rest[1], columns rest[0]


def write_labelmap(volume: Volume, labels: list[np.ndarray]) -> bytes:
    """Per-frame labels [H, W] -> .nii.gz bytes on the input's grid, affine and header (intent 'label')."""
    src = volume.nifti
    if src is None:
        raise InvalidInput("a NIfTI labelmap needs a NIfTI input volume (its affine and grid)")
    return _encode(labelmap_voxels(src, labels), src)


def labelmap_voxels(src: NiftiSource, labels: list[np.ndarray]) -> np.ndarray:
    """Per-frame labels [H, W] -> a label array on the input file's voxel grid [X, Y, Z] (uint8 or uint16)."""
    c = int(src.ornt[src.axis, 0])
    canon_shape = [0, 0, 0]
    for file_axis, (target, _) in enumerate(src.ornt):
        canon_shape[int(target)] = src.shape[file_axis]
    if len(labels) != canon_shape[c]:
        raise InvalidMask(f"{len(labels)} label frames for a volume of {canon_shape[c]} slices")
    top = max(int(np.max(lab, initial=0)) for lab in labels)
    dtype = np.uint8 if top <= 255 else np.uint16
    canon = np.zeros(canon_shape, dtype=dtype)
    for k, lab in enumerate(labels):
        index: list[slice | int] = [slice(None)] * 3
        index[c] = k
        canon[tuple(index)] = lab[::-1, ::-1].T  # undo the display view
    return apply_orientation(canon, ornt_transform(_IDENTITY, src.ornt))


def label_frames(values: np.ndarray, src: NiftiSource) -> list[np.ndarray]:
    """A label array on the input file's voxel grid [X, Y, Z] -> per-frame labels [H, W] int64 in display
    order and view (the inverse of labelmap_voxels)."""
    if tuple(values.shape) != src.shape:
        raise InvalidMask(f"the label volume's grid {tuple(values.shape)} does not match the image's {src.shape}")
    if not np.allclose(values, np.rint(values)):
        raise InvalidMask("the label volume holds non-integer values; a labelmap holds label numbers")
    _, c = _canonical_axis(src.ornt, src.axis)
    return _frames_of(apply_orientation(np.rint(values).astype(np.int64), src.ornt), c)


def _encode(data: np.ndarray, src: NiftiSource) -> bytes:
    header = src.header.copy()
    header.set_data_dtype(data.dtype)
    header.set_slope_inter(1.0, 0.0)
    header.set_intent("label")
    header["cal_min"], header["cal_max"] = 0, int(data.max(initial=0))
    kind = nib.Nifti2Image if isinstance(header, nib.Nifti2Header) else nib.Nifti1Image
    img = kind(data, src.affine, header=header)
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", compresslevel=6, mtime=0) as gz:
        gz.write(img.to_bytes())
    return buf.getvalue()


def read_labelmap_annotation(data: bytes | Path, volume: Volume | None = None, axis: int | None = None,
                             limits: ReadLimits = DEFAULT_LIMITS) -> Annotation:
    """A NIfTI labelmap with labels on exactly ONE slice -> Annotation(frame index, mask [H, W])."""
    img = load_image(data, limits, InvalidMask)
    values = array3d(img, InvalidMask)
    if not np.allclose(values, np.rint(values)):
        raise InvalidMask("the NIfTI labelmap holds non-integer values; a labelmap holds label numbers")
    ornt, file_axis = io_orientation(img.affine), axis
    if volume is not None and volume.nifti is not None:
        if tuple(values.shape) != volume.nifti.shape:
            raise InvalidMask(f"the labelmap's grid {tuple(values.shape)} does not match the volume's "
                              f"{volume.nifti.shape}")
        ornt, file_axis = volume.nifti.ornt, volume.nifti.axis
    _, c = _canonical_axis(ornt, file_axis)
    canon = apply_orientation(np.rint(values).astype(np.int64), ornt)
    others = tuple(a for a in range(3) if a != c)
    labelled = np.flatnonzero(canon.any(axis=others))
    if labelled.size == 0:
        raise InvalidMask("the NIfTI labelmap holds no labels")
    if labelled.size > 1:
        raise InvalidMask(f"the NIfTI labelmap has labels on {labelled.size} slices; label exactly one slice "
                          "(the annotated frame)")
    k = int(labelled[0])
    mask = _slab(canon, c, k)
    if volume is not None and (mask.shape != volume.shape or canon.shape[c] != len(volume)):
        raise InvalidMask("the NIfTI labelmap does not match the frames of the volume")
    return Annotation(mask=mask, frame=k)

"""NRRD volumes (.nrrd, one file: header plus raw or gzip data), the format 3D Slicer writes, in and out.

A NRRD volume is read into the same in-memory NIfTI image the NIfTI reader uses (its voxel grid and a RAS
affine from ``space directions`` / ``space origin``), so slicing, intensity mapping and the labelmap writers
are shared. Label volumes are written back as NRRD in the patient space Slicer and ITK use natively
(left-posterior-superior) with the input's exact grid: origin, spacing and directions.
"""

from __future__ import annotations

import io

import nibabel as nib
import nrrd
import numpy as np

from service.errors import InvalidInput, TooLarge
from service.io.medical.volume import ReadLimits

MAGIC = b"NRRD000"
# NRRD's named 3-D spaces -> the signs that take their axes to RAS
_TO_RAS = {
    "right-anterior-superior": (1.0, 1.0, 1.0), "ras": (1.0, 1.0, 1.0),
    "left-anterior-superior": (-1.0, 1.0, 1.0), "las": (-1.0, 1.0, 1.0),
    "left-posterior-superior": (-1.0, -1.0, 1.0), "lps": (-1.0, -1.0, 1.0),
}
_LPS = np.diag([-1.0, -1.0, 1.0])
_TYPE_SIZES = (
    (1, ("signed char", "int8", "uchar", "unsigned char", "uint8")),
    (2, ("short", "short int", "signed short", "signed short int", "int16", "ushort", "unsigned short",
         "unsigned short int", "uint16")),
    (4, ("int", "signed int", "int32", "uint", "unsigned int", "uint32", "float")),
    (8, ("longlong", "long long", "long long int", "signed long long", "signed long long int", "int64",
         "ulonglong", "unsigned long long", "unsigned long long int", "uint64", "double")),
)


def looks_like_nrrd(data: bytes) -> bool:
    return data.startswith(MAGIC)


def read_nrrd_image(data: bytes, limits: ReadLimits, error: type[InvalidInput]) -> nib.Nifti1Image:
    """A single-file NRRD -> a nibabel image in memory: voxels [X, Y, Z] and a RAS affine [4, 4]."""
    fh = io.BytesIO(data)
    try:
        header = nrrd.read_header(fh)
    except (nrrd.NRRDError, ValueError, UnicodeDecodeError) as exc:
        raise error(f"the NRRD header is not readable ({_reason(exc)})") from None
    if "data file" in header or "datafile" in header:
        raise error("detached NRRD data (.nhdr + data file) is not read: send one .nrrd with the data attached")
    sizes = [int(s) for s in header.get("sizes", [])]
    if len(sizes) not in (2, 3):
        raise error(f"the NRRD image has {len(sizes)} axes; only 3-D volumes (or one 2-D slice) are read")
    voxels = int(np.prod(sizes, dtype=np.int64)) * _itemsize(header, error)
    if voxels > limits.max_bytes:
        raise TooLarge(f"the NRRD image holds more than {limits.max_bytes} bytes of voxels")
    affine = _affine(header, len(sizes), error)
    try:
        values = nrrd.read_data(header, fh, None, index_order="F")
    except (nrrd.NRRDError, ValueError, EOFError, OSError) as exc:
        raise error(f"the NRRD voxel data is corrupt or truncated ({_reason(exc)})") from None
    if values.ndim == 2:
        values = values[..., None]
    return nib.Nifti1Image(np.asarray(values), affine)


def _itemsize(header: dict[str, object], error: type[InvalidInput]) -> int:
    """Bytes per voxel of the header's ``type`` (NRRD's C-style names and their aliases)."""
    name = " ".join(str(header.get("type", "")).lower().replace("_t", "").split())
    for size, names in _TYPE_SIZES:
        if name in names:
            return size
    raise error(f"the NRRD voxel type {name!r} is not a number type")


def _affine(header: dict[str, object], ndim: int, error: type[InvalidInput]) -> np.ndarray:
    """RAS affine: column i is voxel axis i's step, the last column the first voxel's centre."""
    space = str(header.get("space", "left-posterior-superior")).lower()
    if space not in _TO_RAS:
        raise error(f"the NRRD space {space!r} is not a 3-D patient space (use RAS, LAS or LPS)")
    signs = np.diag(_TO_RAS[space])
    steps = np.eye(3)
    if "space directions" in header:
        rows = np.asarray(header["space directions"], dtype=float)
        if rows.shape != (ndim, 3) or not np.all(np.isfinite(rows)):
            raise error("the NRRD 'space directions' are not one finite 3-vector per axis")
        steps[:, :ndim] = rows.T
    elif "spacings" in header:
        steps[:ndim, :ndim] = np.diag(np.asarray(header["spacings"], dtype=float))
    origin = np.asarray(header.get("space origin", np.zeros(3)), dtype=float)
    if origin.shape != (3,) or not np.all(np.isfinite(origin)):
        raise error("the NRRD 'space origin' is not a finite 3-vector")
    affine = np.eye(4)
    affine[:3, :3] = signs @ steps
    affine[:3, 3] = signs @ origin
    return affine


def encode_label_nrrd(voxels: np.ndarray, affine: np.ndarray) -> bytes:
    """Labels [X, Y, Z] on a grid with RAS ``affine`` [4, 4] -> gzip NRRD bytes in LPS space."""
    header = {
        "encoding": "gzip",
        "space": "left-posterior-superior",
        "space directions": (_LPS @ affine[:3, :3]).T,
        "space origin": _LPS @ affine[:3, 3],
        "kinds": ["domain", "domain", "domain"],
    }
    buf = io.BytesIO()
    nrrd.write(buf, np.ascontiguousarray(voxels), header, compression_level=6, index_order="F")
    return buf.getvalue()


def _reason(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text[:120]}" if text else type(exc).__name__

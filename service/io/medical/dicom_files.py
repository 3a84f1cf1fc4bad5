"""DICOM instances from a folder, a zip or a list of bytes -> parsed pydicom datasets (nothing decoded yet).

Error messages name instances by their position in the upload, never by file name: exported file and
folder names often carry patient names.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterable, Sequence
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from service.errors import InvalidFrames, TooLarge
from service.io.medical.privacy import guard_library_logs
from service.io.medical.volume import ReadLimits
from service.io.safezip import ZIP_ERRORS

DICM_OFFSET = 128
_SKIP_NAMES = ("DICOMDIR", "DICOMDIR.", "__MACOSX")
guard_library_logs("pydicom")  # its warnings can quote element values


def looks_like_dicom(data: bytes) -> bool:
    """True for a DICOM Part-10 file (preamble + 'DICM')."""
    return len(data) >= DICM_OFFSET + 4 and data[DICM_OFFSET:DICM_OFFSET + 4] == b"DICM"


def parse_instance(data: bytes, position: int) -> Dataset:
    """One Part-10 instance -> Dataset; ``position`` (1-based) names it in errors."""
    if not looks_like_dicom(data):
        raise InvalidFrames(f"instance {position} is not a DICOM file (no DICM marker)")
    try:
        ds = pydicom.dcmread(io.BytesIO(data))
    except (InvalidDicomError, EOFError, ValueError, OSError, KeyError, TypeError, AttributeError) as exc:
        # pydicom's message can quote element values; name the failure kind only.
        raise InvalidFrames(f"instance {position} is corrupt or truncated ({type(exc).__name__})") from None
    if "SOPClassUID" not in ds:
        raise InvalidFrames(f"instance {position} is corrupt or truncated (no SOP Class UID)")
    return ds


def parse_instances(blobs: Iterable[bytes], limits: ReadLimits) -> list[Dataset]:
    """Instance bytes -> datasets, enforcing the byte and count limits."""
    out: list[Dataset] = []
    total = 0
    for position, blob in enumerate(blobs, start=1):
        total += len(blob)
        if total > limits.max_bytes:
            raise TooLarge(f"the DICOM upload exceeds {limits.max_bytes} bytes")
        if position > limits.max_frames:
            raise TooLarge(f"the DICOM upload holds more than {limits.max_frames} instances")
        out.append(parse_instance(blob, position))
    if not out:
        raise InvalidFrames("the DICOM upload holds no instances")
    return out


def instances_from_zip(data: bytes, limits: ReadLimits) -> list[bytes]:
    """The members of a zip that are DICOM files (name order; DICOMDIR and hidden files skipped)."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        infos = sorted((i for i in archive.infolist() if _wanted(i.filename) and not i.is_dir()),
                       key=lambda i: i.filename)
    except ZIP_ERRORS as exc:
        raise InvalidFrames(f"the zip is not readable ({type(exc).__name__})") from None
    if sum(i.file_size for i in infos) > limits.max_bytes:  # from the directory, before decompressing
        raise TooLarge(f"the zip unpacks to more than {limits.max_bytes} bytes")
    blobs = []
    for position, info in enumerate(infos, start=1):
        try:
            blob = archive.read(info)
        except ZIP_ERRORS as exc:
            raise InvalidFrames(f"zip member {position} is unreadable ({type(exc).__name__})") from None
        if looks_like_dicom(blob):
            blobs.append(blob)
    if not blobs:
        raise InvalidFrames("the zip holds no DICOM files")
    return blobs


def instances_from_folder(folder: Path, limits: ReadLimits) -> list[bytes]:
    """Every DICOM file under ``folder`` (recursive, name order; non-DICOM files skipped)."""
    if not folder.is_dir():
        raise InvalidFrames("the DICOM folder does not exist")
    paths = sorted(p for p in folder.rglob("*") if p.is_file() and _wanted(str(p.relative_to(folder))))
    if sum(p.stat().st_size for p in paths) > limits.max_bytes:
        raise TooLarge(f"the DICOM folder holds more than {limits.max_bytes} bytes")
    blobs = [b for b in (p.read_bytes() for p in paths) if looks_like_dicom(b)]
    if not blobs:
        raise InvalidFrames("the folder holds no DICOM files")
    return blobs


def _wanted(name: str) -> bool:
    parts = name.replace("\\", "/").split("/")
    if any(p.startswith(".") or p in _SKIP_NAMES for p in parts if p):
        return False
    return parts[-1].upper() not in _SKIP_NAMES


def as_blobs(source: Path | bytes | Sequence[bytes], limits: ReadLimits) -> list[bytes]:
    """A folder, zip bytes, one instance's bytes or a list of instance bytes -> instance bytes."""
    if isinstance(source, Path):
        return instances_from_folder(source, limits)
    if isinstance(source, (bytes, bytearray, memoryview)):
        raw = bytes(source)
        if raw.startswith(b"PK\x03\x04"):
            return instances_from_zip(raw, limits)
        return [raw]
    return [bytes(b) for b in source]

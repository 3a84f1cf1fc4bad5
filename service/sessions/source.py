"""What a session keeps of its input's geometry so results can go back as DICOM SEG or NIfTI.

DICOM: the source instances' headers (no pixel data) plus the frame order; NIfTI: header, affine and
orientation. Stored as one blob: JSON metadata and a zip of parts. Never pickle.
"""

from __future__ import annotations

import io
import json
import zipfile

import nibabel as nib
import numpy as np
import pydicom

from service.errors import StateError
from service.io.medical.volume import DicomSource, NiftiSource, Volume


def pack_source(volume: Volume) -> bytes | None:
    """The geometry a SEG or NIfTI writer needs, or None for other inputs."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        if volume.dicom is not None:
            src = volume.dicom
            meta = {"kind": "dicom", "frame_refs": [list(r) for r in src.frame_refs], "modality": src.modality,
                    "multiframe": src.multiframe, "count": len(src.datasets)}
            for i, ds in enumerate(src.datasets):
                part = io.BytesIO()
                pydicom.dcmwrite(part, ds, enforce_file_format=False, implicit_vr=False, little_endian=True)
                zf.writestr(f"{i}.dcm", part.getvalue())
        elif volume.nifti is not None:
            src_n = volume.nifti
            meta = {"kind": "nifti", "affine": src_n.affine.tolist(), "shape": list(src_n.shape),
                    "ornt": src_n.ornt.tolist(), "axis": src_n.axis,
                    "nifti2": isinstance(src_n.header, nib.Nifti2Header)}
            zf.writestr("header.bin", src_n.header.binaryblock)
        else:
            return None
        zf.writestr("meta.json", json.dumps(meta))
    return buf.getvalue()


def unpack_source(data: bytes, frames: list[np.ndarray]) -> Volume:
    """A Volume with the session's frames and the stored geometry."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            meta = json.loads(zf.read("meta.json"))
            if meta["kind"] == "dicom":
                datasets = tuple(pydicom.dcmread(io.BytesIO(zf.read(f"{i}.dcm")), force=True)
                                 for i in range(meta["count"]))
                src = DicomSource(datasets, tuple(tuple(r) for r in meta["frame_refs"]), meta["modality"],
                                  meta["multiframe"])
                return Volume(frames=frames, kind="dicom", dicom=src)
            block = zf.read("header.bin")
            header = nib.Nifti2Header(binaryblock=block) if meta["nifti2"] else nib.Nifti1Header(binaryblock=block)
            nsrc = NiftiSource(np.array(meta["affine"]), header, tuple(meta["shape"]), np.array(meta["ornt"]),
                               int(meta["axis"]))
            return Volume(frames=frames, kind="nifti", nifti=nsrc)
    except (KeyError, ValueError, zipfile.BadZipFile) as exc:
        raise StateError(f"stored source geometry is unreadable: {type(exc).__name__}") from None

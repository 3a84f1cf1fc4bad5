"""Build realistic DICOM series from the dev data (or synthetic arrays) for the medical I/O tests.

The patient and study attributes carry marker strings so privacy tests can look for them in errors and logs.
"""

from __future__ import annotations

import io
import random
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import (
    CTImageStorage,
    EnhancedCTImageStorage,
    ExplicitVRLittleEndian,
    MRImageStorage,
    UltrasoundMultiFrameImageStorage,
    generate_uid,
)

DATA_DEV = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "dev"
PATIENT_NAME = "MARKERNAME^SECRET"
PATIENT_ID = "MARKERID-4711"
HU_OFFSET = -100  # CT builder: HU = pixel - 100, so the window (27.5, 255) gives the pixels back exactly


def dev_sequence(name: str) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Frames [H, W] uint8 and index masks [H, W] of one dev sequence (DAVIS layout; all-zero where no GT)."""
    frames_dir, masks_dir = DATA_DEV / "JPEGImages" / name, DATA_DEV / "Annotations" / name
    if not frames_dir.is_dir():
        pytest.skip(f"the dev sequence {name} is not present (../shared/data/dev beside the clone)",
                    allow_module_level=True)
    files = sorted(frames_dir.glob("*.png"))
    frames = [np.asarray(Image.open(p).convert("L")) for p in files]
    masks = [np.asarray(Image.open(masks_dir / p.name)).astype(np.int64) if (masks_dir / p.name).exists()
             else np.zeros(f.shape[:2], np.int64) for p, f in zip(files, frames)]  # sparse GT: no file, no mask
    return frames, masks


def _patient_study(ds: Dataset, study_uid: str, series_uid: str, modality: str) -> None:
    ds.PatientName, ds.PatientID = PATIENT_NAME, PATIENT_ID
    ds.PatientBirthDate, ds.PatientSex = "19700101", "O"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
    ds.StudyDate, ds.StudyTime, ds.StudyID = "20240102", "101500", "S1"
    ds.AccessionNumber, ds.ReferringPhysicianName = "ACC-MARKER", "REFERRER^MARKER"
    ds.Modality, ds.SeriesNumber = modality, 3
    ds.Manufacturer = "TestCo"


def _file_bytes(ds: Dataset, sop_class: str) -> bytes:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = sop_class, ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    ds.SOPClassUID = sop_class
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def _grey_pixels(ds: Dataset, arr: np.ndarray, signed: bool) -> None:
    ds.Rows, ds.Columns = arr.shape[-2:]
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    bits = 8 * arr.dtype.itemsize
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = bits, bits, bits - 1
    ds.PixelRepresentation = 1 if signed else 0
    ds.PixelData = np.ascontiguousarray(arr).tobytes()


def axial_orientation(tilt_deg: float = 0.0) -> list[float]:
    """Row and column direction cosines; a tilt rotates the plane about the x axis (oblique slices)."""
    t = np.deg2rad(tilt_deg)
    return [1.0, 0.0, 0.0, 0.0, float(np.cos(t)), float(np.sin(t))]


def ct_series(frames: list[np.ndarray], spacing: tuple[float, float, float] = (0.7, 0.7, 5.0),
              tilt_deg: float = 0.0, shuffle_seed: int | None = 0, study_uid: str | None = None,
              series_uid: str | None = None, modality: str = "CT") -> list[bytes]:
    """Single-frame CT (or MR) instances for frames [H, W] uint8: frame k lies at +k * spacing along the
    normal, InstanceNumber counts the other way (so only the geometry gives the right order), stored
    value = pixel + 924 with intercept -1024 (HU = pixel - 100), window (27.5, 255). Files are shuffled."""
    study_uid, series_uid, frame_of_ref = study_uid or generate_uid(), series_uid or generate_uid(), generate_uid()
    iop = axial_orientation(tilt_deg)
    normal = np.cross(iop[:3], iop[3:])
    out = []
    for k, frame in enumerate(frames):
        ds = Dataset()
        _patient_study(ds, study_uid, series_uid, modality)
        ds.SOPInstanceUID, ds.FrameOfReferenceUID = generate_uid(), frame_of_ref
        ds.PositionReferenceIndicator, ds.ImageType = "", ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.InstanceNumber = len(frames) - k
        ds.ImagePositionPatient = [float(v) for v in np.array([-150.0, -170.0, -300.0]) + normal * spacing[2] * k]
        ds.ImageOrientationPatient = iop
        ds.PixelSpacing, ds.SliceThickness = [spacing[0], spacing[1]], spacing[2]
        if modality == "CT":
            ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = -1024, 1, "HU"
            ds.WindowCenter, ds.WindowWidth = 27.5, 255
            _grey_pixels(ds, frame.astype(np.int16) + 924, signed=True)
        else:
            _grey_pixels(ds, frame.astype(np.uint16) * 10 + 5, signed=False)
        out.append(_file_bytes(ds, CTImageStorage if modality == "CT" else MRImageStorage))
    if shuffle_seed is not None:
        random.Random(shuffle_seed).shuffle(out)
    return out


def us_cine(frames: list[np.ndarray], frame_time_ms: float = 20.0) -> bytes:
    """One Ultrasound Multi-frame instance [F, H, W] uint8 (no plane geometry, as scanners write it)."""
    ds = Dataset()
    _patient_study(ds, generate_uid(), generate_uid(), "US")
    ds.SOPInstanceUID, ds.InstanceNumber = generate_uid(), 1
    ds.NumberOfFrames, ds.FrameTime = len(frames), frame_time_ms
    ds.FrameIncrementPointer = (0x0018, 0x1063)
    _grey_pixels(ds, np.stack(frames).astype(np.uint8), signed=False)
    return _file_bytes(ds, UltrasoundMultiFrameImageStorage)


def enhanced_ct(frames: list[np.ndarray], spacing: tuple[float, float, float] = (0.8, 0.8, 2.5),
                seed: int = 1) -> tuple[bytes, list[int]]:
    """One Enhanced CT instance whose frames are stored SHUFFLED; returns (bytes, stored order of frames)."""
    order = list(range(len(frames)))
    random.Random(seed).shuffle(order)
    ds = Dataset()
    _patient_study(ds, generate_uid(), generate_uid(), "CT")
    ds.SOPInstanceUID, ds.InstanceNumber, ds.FrameOfReferenceUID = generate_uid(), 1, generate_uid()
    ds.PositionReferenceIndicator, ds.ImageType = "", ["ORIGINAL", "PRIMARY", "AXIAL", "NONE"]
    ds.ContentDate, ds.ContentTime, ds.AcquisitionDateTime = "20240102", "101500", "20240102101500"
    ds.NumberOfFrames = len(frames)
    shared = Dataset()
    shared.PlaneOrientationSequence = DicomSequence([Dataset()])
    shared.PlaneOrientationSequence[0].ImageOrientationPatient = axial_orientation()
    shared.PixelMeasuresSequence = DicomSequence([Dataset()])
    shared.PixelMeasuresSequence[0].PixelSpacing = [spacing[0], spacing[1]]
    shared.PixelMeasuresSequence[0].SliceThickness = spacing[2]
    shared.PixelValueTransformationSequence = DicomSequence([Dataset()])
    pvt = shared.PixelValueTransformationSequence[0]
    pvt.RescaleIntercept, pvt.RescaleSlope, pvt.RescaleType = -1024, 1, "HU"
    shared.FrameVOILUTSequence = DicomSequence([Dataset()])
    shared.FrameVOILUTSequence[0].WindowCenter, shared.FrameVOILUTSequence[0].WindowWidth = 27.5, 255
    ds.SharedFunctionalGroupsSequence = DicomSequence([shared])
    per_frame = []
    for k in order:
        item = Dataset()
        item.PlanePositionSequence = DicomSequence([Dataset()])
        item.PlanePositionSequence[0].ImagePositionPatient = [-100.0, -100.0, -50.0 + spacing[2] * k]
        per_frame.append(item)
    ds.PerFrameFunctionalGroupsSequence = DicomSequence(per_frame)
    _grey_pixels(ds, np.stack([frames[k] for k in order]).astype(np.int16) + 924, signed=True)
    return _file_bytes(ds, EnhancedCTImageStorage), order


def three_object_ct() -> tuple[list[bytes], list[np.ndarray]]:
    """A CT series of 8 random 48x56 slices (instances shuffled) and its labels: three objects, the second
    absent on slices 3 and 4, the first moving one pixel a slice."""
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (48, 56), dtype=np.uint8) for _ in range(8)]
    labels = []
    for k in range(8):
        m = np.zeros((48, 56), np.uint8)
        m[10:20, 10 + k:25 + k] = 1
        if k not in (3, 4):
            m[30:40, 30:45] = 2
        m[5:8, 40:50] = 3
        labels.append(m)
    return ct_series(frames, shuffle_seed=3), labels

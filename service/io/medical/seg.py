"""DICOM SEG out (highdicom) for a propagated series (reading one back as an annotation: seg_annotation.py).

One segment per object, named by the request (default "Object N"), with a display colour (the DAVIS
palette the PNG masks use, as CIELab), algorithm identification naming the model and its version.
The default is the classic Segmentation Storage class (1.2.840.10008.5.1.4.1.1.66.4) with BINARY frames,
which every PACS, viewer and validator reads; LABELMAP (Label Map Segmentation Storage, 2024,
1.2.840.10008.5.1.4.1.1.66.7) on request where the installed highdicom writes it. Empty frames are omitted.
"""

from __future__ import annotations

import copy
import io
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes

from service.errors import InvalidInput, InvalidMask
from service.io.images import davis_palette
from service.io.medical.privacy import guard_library_logs, scrub
from service.io.medical.volume import DicomSource, Volume, object_names

log = logging.getLogger(__name__)
guard_library_logs("highdicom")  # it logs source-instance UIDs at INFO

SEG_TYPES = ("binary", "labelmap")
LABELMAP_SUPPORTED = hasattr(hd.seg.SegmentationTypeValues, "LABELMAP")
# Type-2 attributes highdicom copies from the sources: present-but-empty is valid DICOM, absent is not.
_TYPE2 = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyID", "StudyDate", "StudyTime",
          "ReferringPhysicianName", "AccessionNumber")
_LO_MAX = 64  # DICOM LO value length


@dataclass(frozen=True)
class SegOutput:
    """A written SEG: the Part-10 ``data`` and what a caller needs to find it again in a PACS."""

    data: bytes
    sop_instance_uid: str
    series_instance_uid: str
    segmentation_type: str
    segments: int


def write_seg(volume: Volume, labels: Sequence[np.ndarray], model_name: str, model_version: str,
              names: Sequence[str] | Mapping[int, str] | None = None, segmentation_type: str = "binary",
              software_version: str = "imos-serve") -> SegOutput:
    """Per-frame labels [H, W] (volume order, 0 = background) -> a DICOM SEG referencing the source series."""
    src = _check(volume, labels)
    ids = sorted(int(v) for v in np.unique(np.stack(labels)) if v != 0)
    if not ids:
        raise InvalidMask("the labels hold no object; there is nothing to write as DICOM SEG")
    lut = np.zeros(max(ids) + 1, dtype=np.uint16)
    lut[ids] = np.arange(1, len(ids) + 1)  # SEG segment numbers must run 1..K
    pixels = _source_order(src, [lut[np.asarray(lab, dtype=np.int64)] for lab in labels])
    kind = _resolve_type(segmentation_type)
    algorithm = hd.AlgorithmIdentificationSequence(name=model_name[:_LO_MAX], version=model_version[:_LO_MAX],
                                                   family=codes.DCM.ArtificialIntelligence)
    described = object_names(ids, names)
    descriptions = [hd.seg.SegmentDescription(
        segment_number=n, segment_label=described[i], segmented_property_category=codes.SCT.Tissue,
        segmented_property_type=codes.SCT.Tissue, algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=algorithm, display_color=_colour(i)) for n, i in enumerate(ids, start=1)]
    seg = _build(_sources(src), pixels, kind, descriptions, model_name, software_version)
    buf = io.BytesIO()
    seg.save_as(buf)
    log.info("dicom seg written", extra={"segments": len(ids), "frames": int(seg.get("NumberOfFrames", 1)),
                                         "segmentation_type": kind})
    return SegOutput(buf.getvalue(), str(seg.SOPInstanceUID), str(seg.SeriesInstanceUID), kind, len(ids))


def _check(volume: Volume, labels: Sequence[np.ndarray]) -> DicomSource:
    if volume.dicom is None:
        raise InvalidInput("DICOM SEG output needs a DICOM input series to reference")
    if len(labels) != len(volume):
        raise InvalidMask(f"{len(labels)} label frames for a series of {len(volume)} frames")
    if any(np.shape(lab) != volume.shape for lab in labels):
        raise InvalidMask(f"label frames must be {volume.shape[0]}x{volume.shape[1]} like the series")
    src = volume.dicom
    ds = src.datasets[0]
    has_geometry = "FrameOfReferenceUID" in ds and ("ImagePositionPatient" in ds or src.multiframe
                                                    and "PerFrameFunctionalGroupsSequence" in ds)
    _check_identifiers(src)
    if not has_geometry and len(volume) > 1:
        # highdicom (like the standard's plane-based SEG) needs patient geometry to place several frames.
        raise InvalidInput("DICOM SEG output needs a series with patient geometry (frame of reference); this "
                           f"{src.modality} series has none: ask for NIfTI, COCO RLE or PNG masks instead")
    return src


_REFERENCED_UIDS = ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID")


def _check_identifiers(src: DicomSource) -> None:
    """A SEG references its source images by these UIDs: name the ones an (anonymised) series left empty."""
    missing = {}
    for keyword in _REFERENCED_UIDS:
        empty = sum(1 for ds in src.datasets if not str(ds.get(keyword, "") or "").strip())
        if empty:
            missing[keyword] = empty
    if missing:
        what = ", ".join(f"{k} (empty on {n} of {len(src.datasets)} instances)" for k, n in missing.items())
        raise InvalidInput(f"DICOM SEG output needs the source series' identifiers, and this series (anonymised?) "
                           f"lacks {what}: a SEG references its source images by them. Restore them, or ask for "
                           "NIfTI, COCO RLE or PNG masks instead")


def _source_order(src: DicomSource, labels: list[np.ndarray]) -> np.ndarray:
    """Labels in display order -> [F, H, W] in the source's frame order (what highdicom indexes)."""
    out = np.zeros((src.source_frame_count(),) + labels[0].shape, dtype=labels[0].dtype)
    for t, (d, f) in enumerate(src.frame_refs):
        out[f if src.multiframe else d] = labels[t]
    return out


def _sources(src: DicomSource) -> list[Dataset]:
    """Copies of the source headers with empty type-2 attributes added where an exporter left them out."""
    out = []
    for ds in src.datasets:
        ds = copy.deepcopy(ds)
        for keyword in _TYPE2:
            if keyword not in ds:
                setattr(ds, keyword, "")
        out.append(ds)
    return out


def _resolve_type(requested: str) -> str:
    kind = str(requested).strip().lower()
    if kind not in SEG_TYPES:
        raise InvalidInput(f"seg_type must be binary (classic Segmentation Storage, the default) or labelmap, "
                           f"not {requested!r}")
    if kind == "labelmap" and not LABELMAP_SUPPORTED:
        raise InvalidInput("the installed highdicom cannot write LABELMAP segmentations; ask for binary")
    return kind.upper()


def _colour(label: int) -> hd.color.CIELabColor:
    """The label's colour in the DAVIS palette the PNG masks use, as the CIELab value DICOM recommends."""
    pal = davis_palette()
    i = 3 * (label % 256)
    return hd.color.CIELabColor.from_rgb(pal[i], pal[i + 1], pal[i + 2])


def _build(sources: list[Dataset], pixels: np.ndarray, kind: str, descriptions: list[hd.seg.SegmentDescription],
           model_name: str, software_version: str) -> hd.seg.Segmentation:
    try:
        seg = hd.seg.Segmentation(
            source_images=sources, pixel_array=pixels, segmentation_type=kind,
            segment_descriptions=descriptions, series_instance_uid=hd.UID(), series_number=9901,
            sop_instance_uid=hd.UID(), instance_number=1, manufacturer="iMOS Serve",
            manufacturer_model_name=model_name[:_LO_MAX], software_versions=software_version[:_LO_MAX],
            device_serial_number="imos-serve", content_label="IMOS", omit_empty_frames=True,
            content_description=f"{model_name} propagation"[:_LO_MAX])
    except (ValueError, TypeError, AttributeError, KeyError) as exc:
        # highdicom's message explains what the sources lack; scrub in case it quotes a UID.
        detail = scrub(str(exc)).strip("'\" ") or type(exc).__name__
        raise InvalidInput(f"DICOM SEG cannot be built for this series: {detail}") from None
    seg.SeriesDescription = f"iMOS {model_name}"[:_LO_MAX]
    return seg

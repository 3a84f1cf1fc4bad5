"""Medical formats and PACS I/O: DICOM series, NIfTI, video in; DICOM SEG, NIfTI, COCO RLE, previews out.

Everything returns or takes a :class:`Volume` (uint8 display frames plus what writers need to map results
back onto the source). Errors are the domain's (service.errors) and never carry patient identifiers.
"""

from service.io.medical.detect import (
    ReadOptions,
    check_annotation,
    detect_annotation,
    detect_format,
    load_annotation,
    load_volume,
)
from service.io.medical.dicom_series import read_dicom_series
from service.io.medical.dicomweb import DicomWebClient, PacsEndpoint, endpoints_from_env
from service.io.medical.intensity import PRESETS, IntensityOptions, Window
from service.io.medical.nifti import read_labelmap_annotation, read_nifti, write_labelmap
from service.io.medical.preview import contact_sheet, overlay_gif, overlay_mp4
from service.io.medical.rle import coco_document, coco_json, decode_rle, encode_rle, labels_from_coco
from service.io.medical.seg import LABELMAP_SUPPORTED, SegOutput, write_seg
from service.io.medical.seg_annotation import read_seg_annotation
from service.io.medical.video import encode_video, read_video
from service.io.medical.volume import Annotation, DicomSource, NiftiSource, ReadLimits, Volume

__all__ = [
    "LABELMAP_SUPPORTED", "PRESETS", "Annotation", "DicomSource", "DicomWebClient", "IntensityOptions",
    "NiftiSource", "PacsEndpoint", "ReadLimits", "ReadOptions", "SegOutput", "Volume", "Window",
    "check_annotation", "coco_document", "coco_json", "contact_sheet", "decode_rle", "detect_annotation",
    "detect_format", "encode_rle", "encode_video", "endpoints_from_env", "labels_from_coco", "load_annotation",
    "load_volume", "overlay_gif", "overlay_mp4", "read_dicom_series", "read_labelmap_annotation", "read_nifti",
    "read_seg_annotation", "read_video", "write_labelmap", "write_seg",
]

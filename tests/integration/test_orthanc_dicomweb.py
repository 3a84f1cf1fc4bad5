"""The DICOMweb client and DICOM SEG writer against a real Orthanc (started here, stopped after)."""

from __future__ import annotations

import io
from collections.abc import Iterator

import highdicom as hd
import httpx
import numpy as np
import pydicom
import pytest

from service.errors import BackendUnavailable, InvalidInput, NotFound, PermissionDenied
from service.io.medical import DicomWebClient, PacsEndpoint, read_dicom_series, write_seg
from tests.integration.orthanc import OrthancServer, free_port
from tests.medical_builders import ct_series, dev_sequence

CT_SEQ, MR_SEQ = "deeplesion__000001_02_01_008-023", "hippocampus__003"


@pytest.fixture()
def client(orthanc: OrthancServer) -> Iterator[DicomWebClient]:
    with DicomWebClient(PacsEndpoint("orthanc", orthanc.dicomweb, *orthanc.auth, timeout_s=30)) as c:
        yield c


def _uids(blob: bytes) -> tuple[str, str]:
    ds = pydicom.dcmread(io.BytesIO(blob), stop_before_pixels=True)
    return str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID)


def _instances(orthanc: OrthancServer) -> int:
    return int(httpx.get(f"{orthanc.url}/statistics", auth=orthanc.auth).json()["CountInstances"])


@pytest.mark.parametrize("kind", ["LABELMAP", "BINARY"])
def test_stow_wado_and_seg_round_trip(orthanc: OrthancServer, client: DicomWebClient, kind: str) -> None:
    frames, masks = dev_sequence(CT_SEQ)
    blobs = ct_series(frames)
    study, series = _uids(blobs[0])
    assert len(client.store(blobs)) == len(blobs)
    volume = read_dicom_series(client.retrieve_series(study, series))
    assert all(np.array_equal(a, b) for a, b in zip(volume.frames, frames))
    out = write_seg(volume, masks, "imos-lite", "1", names=["lesion"], segmentation_type=kind)
    assert client.store([out.data], study_uid=study) == [out.sop_instance_uid]
    fetched = client.retrieve_series(study, out.series_instance_uid)
    assert len(fetched) == 1
    seg = hd.seg.segread(io.BytesIO(fetched[0]))
    assert str(seg.SegmentationType) == kind
    for ds, mask in zip(volume.dicom.datasets, masks):
        got = seg.get_pixels_by_source_instance([str(ds.SOPInstanceUID)], combine_segments=True)[0]
        assert np.array_equal(got, mask)


def test_series_uploaded_by_rest_api_is_retrieved(orthanc: OrthancServer, client: DicomWebClient) -> None:
    frames, _ = dev_sequence(MR_SEQ)
    blobs = ct_series(frames, spacing=(1, 1, 1), modality="MR")
    for blob in blobs:  # Orthanc's own REST upload, not STOW-RS
        response = httpx.post(f"{orthanc.url}/instances", content=blob, auth=orthanc.auth)
        assert response.status_code == 200
    volume = read_dicom_series(client.retrieve_series(*_uids(blobs[0])))
    assert len(volume) == len(frames) and volume.dicom.modality == "MR"


def test_errors_and_nothing_half_written(orthanc: OrthancServer, client: DicomWebClient) -> None:
    frames, _ = dev_sequence(MR_SEQ)
    blobs = ct_series(frames[:6], spacing=(1, 1, 1), modality="MR")
    with pytest.raises(NotFound):
        client.retrieve_series(*_uids(blobs[0]))
    before = _instances(orthanc)
    with pytest.raises(InvalidInput, match="nothing was sent"):
        client.store(blobs[:3] + [b"truncated"])
    assert _instances(orthanc) == before
    with DicomWebClient(PacsEndpoint("orthanc", orthanc.dicomweb, "imos-test", "wrong")) as bad, \
            pytest.raises(PermissionDenied):
        bad.store(blobs)
    assert _instances(orthanc) == before
    gone = PacsEndpoint("gone", f"http://127.0.0.1:{free_port()}/dicom-web", timeout_s=2)
    with DicomWebClient(gone) as dead, pytest.raises(BackendUnavailable, match="unreachable"):
        dead.retrieve_series(*_uids(blobs[0]))

"""POST /v1/dicomweb/segment against a real Orthanc: the stored SEG equals the engine's masks."""

from __future__ import annotations

import asyncio
import io
import logging
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from PIL import Image

from service.engine.loader import load_engine
from service.io.medical import DicomWebClient, PacsEndpoint, read_dicom_series
from service.settings import Settings
from tests.integration.orthanc import OrthancServer
from tests.integration.rest_harness import npy_bytes, rest_client
from tests.medical_builders import PATIENT_ID, PATIENT_NAME, ct_series, dev_sequence

SEQ = "deeplesion__000001_02_01_008-023"


def _upload(orthanc: OrthancServer, frames: list[np.ndarray]) -> tuple[str, str, list[bytes]]:
    instances = ct_series(frames)
    ds = pydicom.dcmread(io.BytesIO(instances[0]))
    with DicomWebClient(PacsEndpoint("o", orthanc.dicomweb, *orthanc.auth)) as c:
        c.store(instances)
    return str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), instances


def test_pacs_round_trip_seg_equals_engine(orthanc: OrthancServer, embedded_settings: Settings,
                                           tiny_repo: Path, monkeypatch: pytest.MonkeyPatch,
                                           caplog: pytest.LogCaptureFixture) -> None:
    if not (Path(__file__).resolve().parents[2].parent / "shared" / "data" / "dev").is_dir():
        pytest.skip("../shared/data/dev is not present")
    frames, masks = dev_sequence(SEQ)
    frames, masks = frames[:8], masks[:8]
    k = int(np.argmax([m.sum() for m in masks]))
    study, series, instances = _upload(orthanc, frames)
    user, password = orthanc.auth
    monkeypatch.setenv("IMOS_PACS__MAIN__URL", orthanc.dicomweb)
    monkeypatch.setenv("IMOS_PACS__MAIN__USERNAME", user)
    monkeypatch.setenv("IMOS_PACS__MAIN__PASSWORD", password)
    caplog.set_level(logging.DEBUG)

    async def scenario() -> dict:  # type: ignore[type-arg]
        async with rest_client(embedded_settings) as (client, _):
            r = await client.post("/v1/dicomweb/segment", data={
                "pacs": "main", "study": study, "series": series, "frame": str(k), "labels": '{"1": "Lesion"}',
                "window": "27.5,255"}, files={"mask": ("m.npy", npy_bytes(masks[k].astype(np.uint8)))})
            assert r.status_code == 200, r.text
            bad = await client.post("/v1/dicomweb/segment", data={"pacs": "main", "study": study, "series": series,
                                    "frame": "0"}, files={"mask": ("m.npy", npy_bytes(np.ones((5, 5), np.uint8)))})
            assert bad.status_code == 400 and "matches no frame" in bad.json()["detail"]
            labelmap = await client.post("/v1/dicomweb/segment", data={
                "pacs": "main", "study": study, "series": series, "frame": str(k), "store": "false",
                "seg_type": "labelmap"}, files={"mask": ("m.npy", npy_bytes(masks[k].astype(np.uint8)))})
            assert labelmap.status_code == 200 and labelmap.json()["stored"] is False
            return r.json()  # type: ignore[no-any-return]

    summary = asyncio.run(scenario())
    assert summary["frames"] == 8 and summary["objects"] == {"1": "Lesion"} and summary["stored"] is True
    with DicomWebClient(PacsEndpoint("o", orthanc.dicomweb, *orthanc.auth)) as c:
        stored = c.retrieve_series(study, summary["seg_series_instance_uid"])
    assert len(stored) == 1  # the failed request stored nothing
    seg = hd.seg.segread(io.BytesIO(stored[0]))
    assert seg.SOPInstanceUID == summary["seg_sop_instance_uid"]
    assert seg.SegmentationType == "BINARY" and seg.SOPClassUID == "1.2.840.10008.5.1.4.1.1.66.4"  # the default
    # the engine run locally on the same input gives the same masks, slice by slice
    volume = read_dicom_series(instances)
    engine = load_engine(tiny_repo, "tiny")
    local = {r.index: r.labels() for r in engine.propagator().run(volume.frames, masks[k], k)}
    assert volume.dicom is not None
    # files were uploaded shuffled: frame t is the instance the geometry puts at position t
    uids = [str(volume.dicom.datasets[volume.dicom.frame_refs[t][0]].SOPInstanceUID) for t in range(8)]
    for t, uid in enumerate(uids):
        assert np.array_equal(_seg_frame(seg, uid, volume.shape), local[t] > 0), f"slice {t}"
    text = caplog.text
    assert PATIENT_NAME not in text and PATIENT_ID not in text and study not in text


def _seg_frame(seg: hd.seg.Segmentation, sop_uid: str, shape: tuple[int, int]) -> np.ndarray:
    """Binary mask of segment 1 on the source instance sop_uid (empty frames are omitted from a SEG)."""
    try:
        arr = seg.get_pixels_by_source_instance(source_sop_instance_uids=[sop_uid], segment_numbers=[1],
                                                combine_segments=True, ignore_spatial_locations=True)
    except (KeyError, ValueError, IndexError):
        return np.zeros(shape, bool)
    return np.asarray(arr)[0] > 0


def test_cli_dicomweb_pull_and_store(orthanc: OrthancServer, tiny_repo: Path, monkeypatch: pytest.MonkeyPatch,
                                     tmp_path: Path) -> None:
    from service.cli.main import main

    if not (Path(__file__).resolve().parents[2].parent / "shared" / "data" / "dev").is_dir():
        pytest.skip("../shared/data/dev is not present")
    frames, masks = dev_sequence(SEQ)
    frames, masks = frames[:6], masks[:6]
    k = int(np.argmax([m.sum() for m in masks]))
    study, series, _ = _upload(orthanc, frames)
    user, password = orthanc.auth
    monkeypatch.setenv("IMOS_PACS__MAIN__URL", orthanc.dicomweb)
    monkeypatch.setenv("IMOS_PACS__MAIN__USERNAME", user)
    monkeypatch.setenv("IMOS_PACS__MAIN__PASSWORD", password)
    np.save(tmp_path / "m.npy", masks[k].astype(np.uint8))
    out = tmp_path / "out"
    assert main(["segment", "--dicomweb", "main", "--study", study, "--series", series, "--mask", str(tmp_path / "m.npy"),
                 "--frame", str(k), "--format", "seg", "--store", "--model", "tiny", "--model-repo", str(tiny_repo),
                 "--quiet", "-o", str(out)]) == 0
    written = pydicom.dcmread(out / "masks.dcm")
    with DicomWebClient(PacsEndpoint("o", orthanc.dicomweb, *orthanc.auth)) as c:
        stored = c.retrieve_series(study, str(written.SeriesInstanceUID))
    assert [pydicom.dcmread(io.BytesIO(b)).SOPInstanceUID for b in stored] == [written.SOPInstanceUID]


def test_dicomweb_series_over_the_frame_limit_is_refused(orthanc: OrthancServer, embedded_settings: Settings,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """IMOS_MAX_FRAMES applies to a series pulled from the PACS too: 413 before anything runs or is stored."""
    frames = [np.full((32, 32), 40 + 10 * t, np.uint8) for t in range(6)]
    study, series, _ = _upload(orthanc, frames)
    user, password = orthanc.auth
    monkeypatch.setenv("IMOS_PACS__MAIN__URL", orthanc.dicomweb)
    monkeypatch.setenv("IMOS_PACS__MAIN__USERNAME", user)
    monkeypatch.setenv("IMOS_PACS__MAIN__PASSWORD", password)
    mask = np.zeros((32, 32), np.uint8)
    mask[8:16, 8:16] = 1

    async def scenario() -> None:
        async with rest_client(embedded_settings.model_copy(update={"max_frames": 4})) as (client, rt):
            r = await client.post("/v1/dicomweb/segment", data={"pacs": "main", "study": study, "series": series,
                                  "frame": "0"}, files={"mask": ("m.npy", npy_bytes(mask))})
            assert r.status_code == 413 and r.json()["code"] == "too_large", r.text
            assert await rt.store.smembers(rt.records.active) == set()

    asyncio.run(scenario())
    with DicomWebClient(PacsEndpoint("o", orthanc.dicomweb, *orthanc.auth)) as c:
        assert len(c.retrieve_series(study, series)) == 6  # only the uploaded series: no SEG was stored


def test_a_pacs_series_opens_as_a_session_for_the_review_page(orthanc: OrthancServer, embedded_settings: Settings,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    if not (Path(__file__).resolve().parents[2].parent / "shared" / "data" / "dev").is_dir():
        pytest.skip("../shared/data/dev is not present")
    frames = dev_sequence(SEQ)[0][:5]
    study, series, _ = _upload(orthanc, frames)
    user, password = orthanc.auth
    monkeypatch.setenv("IMOS_PACS__MAIN__URL", orthanc.dicomweb)
    monkeypatch.setenv("IMOS_PACS__MAIN__USERNAME", user)
    monkeypatch.setenv("IMOS_PACS__MAIN__PASSWORD", password)

    async def scenario() -> None:
        async with rest_client(embedded_settings) as (client, _):
            listed = (await client.get("/v1/dicomweb/pacs")).json()
            assert listed == {"pacs": ["main"]}  # names only: no address, no credentials
            made = await client.post("/v1/dicomweb/sessions", data={"pacs": "main", "study": study,
                                                                     "series": series, "window": "27.5,255"})
            assert made.status_code == 201, made.text
            sid = made.json()["id"]
            assert made.json()["frames"] == 5
            for t in (0, 4):  # the window gives the builder's pixels back, in geometric order
                png = (await client.get(f"/v1/sessions/{sid}/frames/{t}")).content
                assert np.array_equal(np.asarray(Image.open(io.BytesIO(png))), frames[t])
            missing = await client.post("/v1/dicomweb/sessions", data={"pacs": "nowhere", "study": study,
                                                                        "series": series})
            assert missing.status_code == 404 and "unknown PACS" in missing.json()["detail"]

    asyncio.run(scenario())

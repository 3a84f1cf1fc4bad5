"""The PACS round trip: pull a series, propagate one annotation, store a DICOM SEG back."""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from service.errors import GENERIC_MESSAGE, ImosError, InvalidMask
from service.io.medical.detect import ReadOptions, load_annotation
from service.io.medical.dicomweb import DicomWebClient, PacsEndpoint
from service.io.medical.seg import write_seg
from service.io.medical.volume import Volume
from service.pacs import pull_series, store_instances
from service.runtime import Runtime
from service.sessions.model import Event

log = logging.getLogger("imos.pacs")


@dataclass(frozen=True)
class PacsRequest:
    """What to segment: a series on a PACS and its annotation (uploaded bytes, or a SEG series there)."""

    endpoint: PacsEndpoint
    study: str
    series: str
    frame: int | None
    direction: str
    names: dict[int, str]
    options: ReadOptions
    annotation: bytes | None = None
    annotation_series: str | None = None
    store: bool = True
    seg_type: str = "binary"  # classic Segmentation Storage; "labelmap" for Label Map Segmentation Storage


@dataclass(frozen=True)
class PacsResult:
    session: str
    seg_sop_instance_uid: str
    seg_series_instance_uid: str
    stored: bool
    frames: int
    objects: dict[str, str]
    voxels_per_object: dict[str, int]


async def fetch_inputs(req: PacsRequest) -> tuple[Volume, np.ndarray, int]:
    """Pull the series and read its annotation -> (volume, mask [H, W], annotated frame)."""
    volume = await asyncio.to_thread(pull_series, req.endpoint, req.study, req.series, req.options)
    data = req.annotation
    if data is None:
        if not req.annotation_series:
            raise InvalidMask("give an annotation: upload a mask, or name a SEG series in the PACS")
        data = await asyncio.to_thread(_first_instance, req.endpoint, req.study, req.annotation_series)
    ann = load_annotation(data, volume)
    frame = req.frame if req.frame is not None else ann.frame
    if frame is None:
        raise InvalidMask("say which frame the mask annotates (frame); an index PNG does not say")
    if ann.frame is not None and req.frame is not None and ann.frame != req.frame:
        raise InvalidMask(f"frame {req.frame} disagrees with the annotation, which covers frame {ann.frame}")
    return volume, ann.mask, frame


def _first_instance(endpoint: PacsEndpoint, study: str, series: str) -> bytes:
    with DicomWebClient(endpoint) as client:
        instances = client.retrieve_series(study, series)
    if len(instances) != 1:
        raise InvalidMask(f"the annotation series holds {len(instances)} instances; expected one DICOM SEG")
    return instances[0]


async def run_pacs_job(rt: Runtime, tenant: str, req: PacsRequest, volume: Volume, mask: np.ndarray,
                       frame: int, sid: str) -> PacsResult:
    """Propagate in session sid, build the SEG, store it (the last step: nothing is stored on failure)."""
    await rt.sessions.require_worker()
    await rt.sessions.annotate(sid, tenant, frame, mask)
    run = await rt.sessions.propagate(sid, tenant, req.direction)
    await rt.sessions.wait_run(sid, tenant, run.id)
    labels = await rt.sessions.all_labels(sid, tenant)
    stack = np.stack(labels)
    ids = [int(v) for v in np.unique(stack) if v != 0]
    if not ids:
        raise InvalidMask("the propagation produced no object on any frame; nothing to store")
    name, _, version = rt.sessions.model.partition(":")
    seg = await asyncio.to_thread(write_seg, volume, labels, name, version or "1", req.names, req.seg_type)
    if req.store:
        await asyncio.to_thread(store_instances, req.endpoint, [seg.data], req.study)
    names = {str(i): req.names.get(i, f"Object {i}") for i in ids}
    result = PacsResult(sid, seg.sop_instance_uid, seg.series_instance_uid, req.store, len(labels), names,
                        {str(i): int((stack == i).sum()) for i in ids})
    log.info("pacs job done", extra={"session": sid, "frames": len(labels), "objects": len(ids), "stored": req.store})
    return result


async def publish_result(rt: Runtime, sid: str, outcome: PacsResult | Exception) -> None:
    """Background mode: the outcome becomes an event of the session's stream."""
    if isinstance(outcome, PacsResult):
        ev = Event("stored", 0, message=json.dumps(asdict(outcome)))
    else:
        err = outcome if isinstance(outcome, ImosError) else None
        ev = Event("error", 0, message=err.public_message() if err else GENERIC_MESSAGE,
                   code=err.code if err else "internal")
    await rt.records.publish(sid, ev)


def summary(result: PacsResult) -> dict[str, Any]:
    return asdict(result)

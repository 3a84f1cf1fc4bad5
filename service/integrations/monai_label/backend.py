"""The MONAI Label calls on the session service: images become sessions, painted slices annotations.

An uploaded volume (PUT /datastore/?image=ID or PUT /session/) becomes one iMOS session holding its slices
and its grid; the same voxels uploaded again (the module uploads its volume once per path) find the same
session, so its annotations and results carry over. /infer applies the painted slices (the label file it
carries, or the label submitted for the image), propagates when anything changed, waits for the run and
answers with the whole label volume on the input's grid.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import json
import logging
import time
import uuid
from dataclasses import dataclass
from typing import Any

import numpy as np

from service.errors import InvalidInput, InvalidMask, NotFound
from service.gateway.decoding import decode_volume, read_options
from service.integrations.monai_label import painting, protocol
from service.io.medical.detect import load_label_values
from service.io.medical.nifti import label_frames, labelmap_voxels, write_labelmap
from service.io.medical.nrrd import encode_label_nrrd
from service.io.medical.volume import Volume
from service.runtime import Runtime
from service.sessions.source import pack_source

log = logging.getLogger("imos.monai_label")


@dataclass(frozen=True)
class Answer:
    """The infer reply: the label volume file (its basename and bytes) and the params part."""

    filename: str
    data: bytes
    params: dict[str, Any]


class Backend:
    """MONAI Label on one gateway; every record lives in the session store, scoped by tenant."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.prefix = f"{rt.settings.key_prefix}:ml"

    @property
    def labels(self) -> list[str]:
        return protocol.label_names(self.rt.settings.monai_label_labels)

    def info(self) -> dict[str, Any]:
        return protocol.info_document(self.labels, f"{self.rt.model.name}:{self.rt.model.version}")

    async def add_image(self, tenant: str, image_id: str, data: bytes, filename: str | None) -> dict[str, Any]:
        """PUT /datastore/?image=ID: the volume under the caller's id."""
        if not image_id.strip():
            raise InvalidInput("the image query parameter (the image id) is empty")
        sid = await self._session_for(tenant, data, filename)
        await self._put(tenant, "image", image_id, sid)
        return {"image": image_id}

    async def add_session(self, tenant: str, data: bytes, filename: str | None) -> dict[str, Any]:
        """PUT /session/: the volume, named by the session id the module sends with each infer."""
        sid = await self._session_for(tenant, data, filename)
        await self._put(tenant, "session", sid, sid)
        return {"session_id": sid, "session_info": await self._summary(tenant, sid)}

    async def session_info(self, tenant: str, session_id: str) -> dict[str, Any]:
        sid = await self._get(tenant, "session", session_id)
        return {"session_id": session_id, "session_info": await self._summary(tenant, sid)}

    async def remove_session(self, tenant: str, session_id: str) -> dict[str, Any]:
        await self._get(tenant, "session", session_id)
        await self.rt.store.delete(self._key(tenant, "session", session_id))
        return {"session_id": session_id}

    async def save_label(self, tenant: str, image_id: str, data: bytes, params: dict[str, Any]) -> dict[str, Any]:
        """PUT /datastore/label?image=ID: the painted slices become annotations; the next Run propagates."""
        sid = await self._get(tenant, "image", image_id)
        names = protocol.value_names(params.get("label_info"), self.labels)
        changed = await self._apply(tenant, sid, data, names)
        return {"image": image_id, "label": image_id, "annotated_frames": changed}

    async def infer(self, tenant: str, model: str, image_id: str, session_id: str | None, params: dict[str, Any],
                    label: bytes | None) -> Answer:
        """POST /infer/{model}: propagate what is painted and answer with the label volume."""
        if model != protocol.MODEL:
            raise NotFound(f"no model {model!r} here; this server offers {protocol.MODEL!r}")
        wanted = protocol.infer_params(params, self.labels)
        sid = await (self._get(tenant, "session", session_id) if session_id else self._get(tenant, "image", image_id))
        await self.rt.sessions.require_worker()
        started = time.monotonic()
        if label is not None:
            await self._apply(tenant, sid, label, wanted.names)
        await self._propagate_if_needed(tenant, sid)
        await self.rt.sessions.wait_run(sid, tenant)
        waited = time.monotonic() - started
        answer = await self._answer(tenant, sid, wanted.extension)
        answer.params["latencies"] = {"infer": round(waited, 3), "total": round(time.monotonic() - started, 3)}
        log.info("monai label answer", extra={"session": sid, "seconds": round(waited, 3)})
        return answer

    async def _session_for(self, tenant: str, data: bytes, filename: str | None) -> str:
        """The session of these voxels (made now if none is alive); only NIfTI and NRRD carry the grid the
        answer needs."""
        settings = self.rt.settings
        volume = await decode_volume(settings, data, filename, read_options(settings))
        if volume.nifti is None:
            raise InvalidInput("MONAI Label images must be NIfTI (.nii, .nii.gz) or NRRD (.nrrd) volumes")
        digest = await asyncio.to_thread(_volume_digest, volume)
        known = await self.rt.store.get(self._key(tenant, "volume", digest))
        if known is not None and await self._alive(known.decode(), tenant):
            return known.decode()
        meta = await self.rt.sessions.create(tenant, volume.frames, source=pack_source(volume))
        await self.rt.store.set(self._key(tenant, "volume", digest), meta.id.encode(), settings.session_ttl_s)
        log.info("monai label volume stored", extra={"session": meta.id, "frames": len(volume.frames)})
        return meta.id

    async def _apply(self, tenant: str, sid: str, data: bytes, names: dict[int, str]) -> list[int]:
        """Annotate the painted slices of a label volume; returns their frame indices."""
        meta = await self.rt.records.meta(sid, tenant)
        volume = await self._geometry(sid, tenant)
        assert volume.nifti is not None  # _geometry refuses others
        limits = read_options(self.rt.settings).limits
        values = await asyncio.to_thread(load_label_values, data, limits)
        frames = await asyncio.to_thread(label_frames, values, volume.nifti)
        current = await self._current(sid, tenant) if meta.run else None
        known = {int(k): v for k, v in meta.labels.items() if str(k).isdigit()}
        painted = painting.painted_slices(frames, names, known, current)
        painting.require_painting(painted, current is not None)
        if painted.names != known:
            await self.rt.sessions.set_labels(sid, tenant, {str(k): v for k, v in painted.names.items()})
        for t, mask in sorted(painted.masks.items()):
            await self.rt.sessions.annotate(sid, tenant, t, mask)
        if painted.masks:
            await self.rt.store.set(self._key(tenant, "pending", sid), b"1", self.rt.settings.session_ttl_s)
        return sorted(painted.masks)

    async def _current(self, sid: str, tenant: str) -> list[np.ndarray]:
        """The session's result per frame, after its current run (a run still going is waited for)."""
        status = await self.rt.sessions.status(sid, tenant)
        if status["state"] == "running":
            await self.rt.sessions.wait_run(sid, tenant)
        return await self.rt.sessions.all_labels(sid, tenant)

    async def _propagate_if_needed(self, tenant: str, sid: str) -> None:
        """A new run when slices were painted since the last one (or none ran yet)."""
        pending = self._key(tenant, "pending", sid)
        meta = await self.rt.records.meta(sid, tenant)
        if meta.run is not None and await self.rt.store.get(pending) is None:
            return
        if not await self.rt.records.annotations(sid):
            raise InvalidMask("nothing is painted on this image yet: paint the structures on one slice, then "
                              "send it as the label file or Submit Label before Run")
        await self.rt.sessions.propagate(sid, tenant)
        await self.rt.store.delete(pending)

    async def _answer(self, tenant: str, sid: str, extension: str) -> Answer:
        labels = await self.rt.sessions.all_labels(sid, tenant)
        meta = await self.rt.records.meta(sid, tenant)
        volume = await self._geometry(sid, tenant, labels)
        data = await asyncio.to_thread(_encode, volume, labels, extension)
        names = {v: int(k) for k, v in sorted(meta.labels.items(), key=lambda kv: int(kv[0]))}
        return Answer(f"imos_{uuid.uuid4().hex[:12]}{extension}", data,
                      {"label_names": names, "frames": len(labels), "model": meta.model})

    async def _geometry(self, sid: str, tenant: str, frames: list[np.ndarray] | None = None) -> Volume:
        volume = await self.rt.sessions.source_volume(sid, tenant, frames)
        if volume is None or volume.nifti is None:
            raise InvalidInput("this session was not made from a NIfTI or NRRD volume")
        return volume

    async def _summary(self, tenant: str, sid: str) -> dict[str, Any]:
        status = await self.rt.sessions.status(sid, tenant)
        return {"frames": status["frames"], "state": status["state"], "annotated_frames": status["annotated_frames"]}

    async def _alive(self, sid: str, tenant: str) -> bool:
        try:
            await self.rt.records.meta(sid, tenant)
        except NotFound:
            return False
        return True

    def _key(self, tenant: str, kind: str, ident: str) -> str:
        return f"{self.prefix}:{hashlib.sha256(tenant.encode()).hexdigest()[:16]}:{kind}:{ident}"

    async def _put(self, tenant: str, kind: str, ident: str, sid: str) -> None:
        await self.rt.store.set(self._key(tenant, kind, ident), json.dumps({"session": sid}).encode(),
                                self.rt.settings.session_ttl_s)

    async def _get(self, tenant: str, kind: str, ident: str) -> str:
        raw = await self.rt.store.get(self._key(tenant, kind, ident))
        what = "image" if kind == "image" else "session"
        if raw is None:
            raise NotFound(f"no {what} {ident!r} here (expired or never uploaded): upload the volume again")
        sid = str(json.loads(raw)["session"])
        if not await self._alive(sid, tenant):
            raise NotFound(f"the {what} {ident!r} has expired: upload the volume again")
        return sid


def _volume_digest(volume: Volume) -> str:
    h = hashlib.sha256()
    assert volume.nifti is not None
    h.update(np.asarray(volume.nifti.affine, np.float64).tobytes())
    h.update(repr(volume.nifti.shape).encode())
    for frame in volume.frames:
        h.update(np.ascontiguousarray(frame).tobytes())
    return h.hexdigest()


def _encode(volume: Volume, labels: list[np.ndarray], extension: str) -> bytes:
    """The answer's label volume on the input's grid, as .nrrd, .nii.gz or .nii."""
    assert volume.nifti is not None
    if extension == ".nrrd":
        return encode_label_nrrd(labelmap_voxels(volume.nifti, labels), volume.nifti.affine)
    data = write_labelmap(volume, labels)
    return data if extension == ".nii.gz" else gzip.decompress(data)


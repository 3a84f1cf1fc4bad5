"""The served model as an Open Inference Protocol model: metadata, one-shot inference and sequences.

Inputs: ``FRAMES`` (UINT8, [T, H, W] or [T, H, W, 3]) and ``MASK`` (UINT8 / INT32 / INT64, [H, W], 0 =
background); request parameters ``frame`` (the annotated frame, default 0), ``direction`` (both, forward,
backward) and ``settings`` (a JSON object of XMem settings). Output: ``MASKS`` (UINT8 [T, H, W]; UINT16
past label 255). With Triton's sequence parameters (``sequence_id``, ``sequence_start``,
``sequence_end``) each request carries one frame ([1, H, W(, 3)]; MASK on the start, or later as a
correction) and gets that frame's mask: the sequence is a live-stream session, which idles out like any
session (IMOS_SESSION_TTL_S).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any

import numpy as np

from service.errors import InvalidInput, failure_error
from service.integrations.kserve.tensors import InferRequest
from service.io.outputs import compact_labels
from service.runtime import Runtime
from service.sessions.codec import decode_labels

Output = tuple[str, str, np.ndarray]
POLL_S = 0.01
EXTENSIONS = ["binary_tensor_data", "sequence", "parameters"]


def server_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("imos-serve")
    except PackageNotFoundError:
        return "0"


async def is_ready(rt: Runtime) -> bool:
    """The store answers and a worker can run the model (this process's, or a live one elsewhere)."""
    from service.errors import StoreUnavailable

    try:
        await rt.store.ping()
    except StoreUnavailable:
        return False
    return rt.worker is not None or bool(await rt.records.live_workers())


class InferenceModel:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.name, self.version = rt.model.name, str(rt.model.version)

    def metadata(self) -> dict[str, Any]:
        return {"name": self.name, "versions": [self.version], "platform": "imos-serve",
                "inputs": [{"name": "FRAMES", "datatype": "UINT8", "shape": [-1, -1, -1]},
                           {"name": "MASK", "datatype": "UINT8", "shape": [-1, -1]}],
                "outputs": [{"name": "MASKS", "datatype": "UINT8", "shape": [-1, -1, -1]}]}

    def check(self, name: str, version: str | None) -> None:
        from service.errors import NotFound

        if name != self.name or (version not in (None, "", self.version)):
            raise NotFound(f"model {name}{'/' + version if version else ''} is not served here; this server "
                           f"serves {self.name} version {self.version}")

    async def infer(self, req: InferRequest, tenant: str) -> list[Output]:
        frames = _frames(req.inputs)
        seq = req.parameters.get("sequence_id")
        if seq not in (None, 0, "", "0"):
            return await Sequences(self.rt).step(tenant, str(seq), req, frames)
        mask = _mask(req.inputs, required=True)
        assert mask is not None
        sessions = self.rt.sessions
        meta = await sessions.one_shot(tenant, frames, _int(req.parameters, "frame", 0), mask,
                                       str(req.parameters.get("direction", "both")), _settings(req.parameters))
        try:
            await sessions.wait_run(meta.id, tenant)
            labels = await sessions.all_labels(meta.id, tenant)
        finally:
            await sessions.delete(meta.id, tenant)
        return [_masks(np.stack(labels))]


class Sequences:
    """Triton's sequence semantics over live-stream sessions (the id -> session map lives in the store)."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    def _key(self, tenant: str, seq: str) -> str:
        return f"{self.rt.settings.key_prefix}:kserve:seq:{tenant}:{seq}"

    async def step(self, tenant: str, seq: str, req: InferRequest, frames: list[np.ndarray]) -> list[Output]:
        if len(frames) != 1:
            raise InvalidInput(f"a sequence request carries one frame (FRAMES [1, H, W]); got {len(frames)}")
        mask = _mask(req.inputs, required=False)
        if req.parameters.get("sequence_start"):
            sid, t = await self._start(tenant, seq, frames[0], mask)
        else:
            sid, t = await self._next(tenant, seq, frames[0], mask)
        labels = await self._mask_of(sid, tenant, t)
        if req.parameters.get("sequence_end"):
            await self.rt.sessions.delete(sid, tenant)
            await self.rt.store.delete(self._key(tenant, seq))
        return [_masks(labels[None])]

    async def _start(self, tenant: str, seq: str, frame: np.ndarray, mask: np.ndarray | None) -> tuple[str, int]:
        if mask is None:
            raise InvalidInput("the first request of a sequence (sequence_start) needs MASK")
        old = await self.rt.store.get(self._key(tenant, seq))
        if old is not None:
            await self._drop(json.loads(old)["session"], tenant)
        meta = await self.rt.sessions.create(tenant, [frame], stream=True)
        await self.rt.sessions.annotate(meta.id, tenant, 0, mask)
        await self._keep(tenant, seq, meta.id, 1)
        return meta.id, 0

    async def _next(self, tenant: str, seq: str, frame: np.ndarray, mask: np.ndarray | None) -> tuple[str, int]:
        raw = await self.rt.store.get(self._key(tenant, seq))
        if raw is None:
            raise InvalidInput(f"sequence {seq} was not started (sequence_start) or has been idle past "
                               "IMOS_SESSION_TTL_S")
        doc = json.loads(raw)
        sid, t = str(doc["session"]), int(doc["next"])
        await self.rt.sessions.append(sid, tenant, [frame])
        if mask is not None:
            await self.rt.sessions.annotate(sid, tenant, t, mask)  # a correction re-anchors the stream
        await self._keep(tenant, seq, sid, t + 1)
        return sid, t

    async def _keep(self, tenant: str, seq: str, sid: str, nxt: int) -> None:
        doc = json.dumps({"session": sid, "next": nxt}).encode()
        await self.rt.store.set(self._key(tenant, seq), doc, self.rt.settings.session_ttl_s)

    async def _drop(self, sid: str, tenant: str) -> None:
        try:
            await self.rt.sessions.delete(sid, tenant)
        except Exception:  # noqa: BLE001 - an expired session is already gone
            pass

    async def _mask_of(self, sid: str, tenant: str, t: int) -> np.ndarray:
        """Frame t's mask from the session's current run, as soon as it is published."""
        loop = asyncio.get_running_loop()
        end = loop.time() + self.rt.settings.run_deadline_s
        while True:
            meta = await self.rt.records.meta(sid, tenant)
            run = meta.run.id if meta.run else -1
            got = await self.rt.records.result(sid, t)
            if got is not None and got[0] == run:
                return decode_labels(got[1])
            failure = await self.rt.records.failure(sid, run)
            if failure is not None:
                raise failure_error(failure.code, failure.message)
            if loop.time() > end:
                from service.errors import DeadlineExceeded

                raise DeadlineExceeded(f"frame {t} of the sequence took longer than IMOS_RUN_DEADLINE_S")
            await asyncio.sleep(POLL_S)


def _frames(inputs: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    frames = inputs.get("FRAMES")
    if frames is None:
        raise InvalidInput("the request needs the input FRAMES (UINT8, [T, H, W] or [T, H, W, 3])")
    if frames.dtype != np.uint8 or frames.ndim not in (3, 4) or (frames.ndim == 4 and frames.shape[-1] != 3):
        raise InvalidInput(f"FRAMES must be UINT8 [T, H, W] or [T, H, W, 3]; got {frames.dtype} {list(frames.shape)}")
    return list(frames)


def _mask(inputs: Mapping[str, np.ndarray], required: bool) -> np.ndarray | None:
    mask = inputs.get("MASK")
    if mask is None:
        if required:
            raise InvalidInput("the request needs the input MASK ([H, W] index mask, 0 = background)")
        return None
    if mask.ndim != 2 or mask.dtype.kind not in "ui":
        raise InvalidInput(f"MASK must be an integer [H, W] index mask; got {mask.dtype} {list(mask.shape)}")
    return np.asarray(mask, np.int64)


def _int(params: Mapping[str, Any], key: str, default: int) -> int:
    try:
        return int(params.get(key, default))
    except (TypeError, ValueError):
        raise InvalidInput(f"parameter {key} must be an integer") from None


def _settings(params: Mapping[str, Any]) -> dict[str, str] | None:
    raw = params.get("settings")
    if raw is None:
        return None
    try:
        doc = json.loads(raw) if isinstance(raw, str) else raw
    except ValueError:
        raise InvalidInput("parameter settings must be a JSON object of XMem settings") from None
    if not isinstance(doc, dict):
        raise InvalidInput("parameter settings must be a JSON object of XMem settings")
    return {str(k): str(v) for k, v in doc.items()}


def _masks(stack: np.ndarray) -> Output:
    out = compact_labels(stack)
    return ("MASKS", "UINT8" if out.dtype == np.uint8 else "UINT16", out)

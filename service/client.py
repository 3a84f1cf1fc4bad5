"""A Python client of the imos.v1 gRPC service (what ``imos segment --server`` uses).

``GrpcClient.segment`` picks the call by direction:

* both: one Track stream. Frames go up one by one (no message-size limit on the
  sequence), the mask rides on its frame, and masks come back while frames are
  still being sent: the server propagates backward over the frames already sent
  and forward over the ones that follow.
* forward or backward: CreateSession (the whole sequence in one message, so it
  must fit the server's max message size) and Propagate in that direction.

Either way the session is deleted afterwards, and a failed call raises the
domain error of its status code (grpc_errors' table read backwards).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from types import ModuleType
from typing import Any

import grpc
import numpy as np

from service.engine.validate import check_frame
from service.errors import InvalidInput
from service.gateway.grpc_convert import direction_value, image_to_proto, mask_to_proto
from service.gateway.grpc_errors import CODE_KEY, from_status
from service.gateway.protos import load_protos
from service.io.images import decode_mask

ProgressCallback = Callable[[int, int], None]  # (masks received, frames in the sequence)


def grpc_target(url: str) -> tuple[str, bool]:
    """'host:port', 'grpc://host:port' or 'grpcs://host:port' -> (target, use TLS)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url, False
    if scheme in ("grpc", "grpcs"):
        return rest.rstrip("/"), scheme == "grpcs"
    raise InvalidInput(f"{url!r} is not a gRPC address: use host:port, grpc://host:port or grpcs://host:port")


def as_labels(png: bytes) -> np.ndarray:
    labels = decode_mask(png, "server mask", widen=False)  # uint8 from palette PNGs
    if labels.dtype == np.uint8:
        return labels
    return labels.astype(np.uint8) if labels.max(initial=0) < 256 else labels.astype(np.int32)


class GrpcClient:
    """Async client; use ``async with GrpcClient(target) as c:`` or call close()."""

    def __init__(self, target: str, *, tls: bool = False, max_message_bytes: int = 64 << 20) -> None:
        self.pb2, pb2_grpc = load_protos()
        options = [("grpc.max_send_message_length", max_message_bytes),
                   ("grpc.max_receive_message_length", max_message_bytes)]
        self.channel = (grpc.aio.secure_channel(target, grpc.ssl_channel_credentials(), options) if tls
                        else grpc.aio.insecure_channel(target, options))
        self.stub = pb2_grpc.PropagationStub(self.channel)
        self.model: str | None = None  # "name:version" that computed the last segment() (the server says)

    async def __aenter__(self) -> GrpcClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self.channel.close()

    def _options(self, settings: dict[str, str] | None, labels: dict[str, str] | None = None) -> Any:
        return self.pb2.SessionOptions(settings=settings or {}, labels=labels or {})

    # ------------------------------------------------------------------ sessions

    async def create_session(self, frames: Sequence[np.ndarray], settings: dict[str, str] | None = None,
                             labels: dict[str, str] | None = None) -> tuple[str, int]:
        """Upload a sequence; returns (session id, frame count)."""
        images = [image_to_proto(self.pb2, check_frame(f, i)) for i, f in enumerate(frames)]
        req = self.pb2.CreateSessionRequest(frames=images, options=self._options(settings, labels))
        resp = await _call(self.stub.CreateSession(req))
        return resp.session_id, resp.num_frames

    async def get_session(self, sid: str) -> Any:
        """The session's status (an imos.v1.Session message)."""
        return await _call(self.stub.GetSession(self.pb2.GetSessionRequest(session_id=sid)))

    async def delete_session(self, sid: str) -> None:
        await _call(self.stub.DeleteSession(self.pb2.DeleteSessionRequest(session_id=sid)))

    async def propagate(self, sid: str, direction: str = "both",
                        annotations: dict[int, np.ndarray] | None = None) -> AsyncIterator[Any]:
        """PropagateResponse messages of one run, up to and including its RunDone."""
        notes = [self.pb2.Annotation(frame=t, mask=mask_to_proto(self.pb2, m)) for t, m in (annotations or {}).items()]
        req = self.pb2.PropagateRequest(session_id=sid, direction=direction_value(self.pb2, direction),
                                        annotations=notes)
        async for resp in _stream(self.stub.Propagate(req)):
            yield resp

    async def track(self, requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
        """TrackResponse messages for a stream of TrackRequest messages."""
        async for resp in _stream(self.stub.Track(requests)):
            yield resp

    # ------------------------------------------------------------------ segment

    async def segment(self, frames: Sequence[np.ndarray], mask: np.ndarray, frame_index: int,
                      direction: str = "both", settings: dict[str, str] | None = None,
                      on_progress: ProgressCallback | None = None) -> list[np.ndarray]:
        """Index masks for every frame (background where the direction does not reach)."""
        if not 0 <= frame_index < len(frames):
            raise InvalidInput(f"frame {frame_index} is outside the sequence's frames 0..{len(frames) - 1}")
        results = _Collector(len(frames), on_progress)
        if direction == "both":
            await self._segment_track(frames, mask, frame_index, settings, results)
        else:
            await self._segment_stored(frames, mask, frame_index, direction, settings, results)
        return results.labels(frames)

    async def _segment_track(self, frames: Sequence[np.ndarray], mask: np.ndarray, frame_index: int,
                             settings: dict[str, str] | None, results: _Collector) -> None:
        sid = None
        try:
            requests = _track_requests(self.pb2, frames, mask, frame_index, self._options(settings))
            async for resp in self.track(requests):
                kind = resp.WhichOneof("kind")
                if kind == "opened":
                    sid = resp.opened.session_id
                elif kind == "frame":
                    results.add(resp.frame)
            if sid is not None:
                self.model = (await self.get_session(sid)).model
        finally:
            if sid is not None:
                await self.delete_session(sid)

    async def _segment_stored(self, frames: Sequence[np.ndarray], mask: np.ndarray, frame_index: int,
                              direction: str, settings: dict[str, str] | None, results: _Collector) -> None:
        sid, _ = await self.create_session(frames, settings)
        try:
            async for resp in self.propagate(sid, direction, {frame_index: mask}):
                if resp.WhichOneof("kind") == "frame":
                    results.add(resp.frame)
            self.model = (await self.get_session(sid)).model
        finally:
            await self.delete_session(sid)


class _Collector:
    """Masks received per frame; the latest run's mask wins."""

    def __init__(self, total: int, on_progress: ProgressCallback | None) -> None:
        self.total, self.on_progress = total, on_progress
        self.masks: dict[int, tuple[int, bytes]] = {}

    def add(self, result: Any) -> None:
        held = self.masks.get(result.frame)
        if held is None or result.run_id >= held[0]:
            self.masks[result.frame] = (result.run_id, result.mask_png)
        if self.on_progress is not None:
            self.on_progress(len(self.masks), self.total)

    def labels(self, frames: Sequence[np.ndarray]) -> list[np.ndarray]:
        out = []
        for t, f in enumerate(frames):
            got = self.masks.get(t)
            out.append(as_labels(got[1]) if got else np.zeros(np.shape(f)[:2], np.uint8))
        return out


async def _track_requests(pb2: ModuleType, frames: Sequence[np.ndarray], mask: np.ndarray, frame_index: int,
                          options: Any) -> AsyncIterator[Any]:
    """open, then every frame in order, the mask on its frame; the end is the half-close."""
    yield pb2.TrackRequest(open=pb2.TrackOpen(options=options))
    for t, f in enumerate(frames):
        msg = pb2.TrackFrame(index=t, image=image_to_proto(pb2, check_frame(f, t)))
        if t == frame_index:
            msg.mask.CopyFrom(mask_to_proto(pb2, mask))
        yield pb2.TrackRequest(frame=msg)


def _domain_error(exc: grpc.aio.AioRpcError) -> Exception:
    trailing = dict(exc.trailing_metadata() or ())
    code = trailing.get(CODE_KEY)
    return from_status(exc.code(), exc.details() or "", code if isinstance(code, str) else None)


async def _call(call: Any) -> Any:
    try:
        return await call
    except grpc.aio.AioRpcError as exc:
        raise _domain_error(exc) from None


async def _stream(call: Any) -> AsyncIterator[Any]:
    try:
        async for resp in call:
            yield resp
    except grpc.aio.AioRpcError as exc:
        raise _domain_error(exc) from None


def segment_remote(url: str, frames: Sequence[np.ndarray], mask: np.ndarray, frame: int, direction: str = "both",
                   settings: dict[str, str] | None = None,
                   progress_cb: ProgressCallback | None = None) -> list[np.ndarray]:
    """Blocking: index masks for every frame, computed by the service at url."""
    return segment_remote_with_model(url, frames, mask, frame, direction, settings, progress_cb)[0]


def segment_remote_with_model(url: str, frames: Sequence[np.ndarray], mask: np.ndarray, frame: int,
                              direction: str = "both", settings: dict[str, str] | None = None,
                              progress_cb: ProgressCallback | None = None) -> tuple[list[np.ndarray], str | None]:
    """segment_remote, and the "name:version" of the model that computed the masks."""
    target, tls = grpc_target(url)

    async def run() -> tuple[list[np.ndarray], str | None]:
        async with GrpcClient(target, tls=tls) as client:
            labels = await client.segment(frames, mask, frame, direction, settings, progress_cb)
            return labels, client.model

    return asyncio.run(run())

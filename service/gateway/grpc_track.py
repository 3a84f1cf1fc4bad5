"""One Track call: frames in, masks out, concurrently.

A reader task takes the client's messages and feeds SessionService (create,
append, annotate, close_stream); a relay task follows the session's events and
turns each computed frame into a FrameResult. Both put what the client should
get into one queue; the call's response iterator drains it. Masks therefore go
out as soon as the worker publishes them, whatever the client is sending.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Coroutine
from types import ModuleType
from typing import Any

from service.engine.validate import check_mask
from service.errors import Conflict, InvalidInput, failure_error
from service.gateway.grpc_convert import EventConverter, Message, image_from_proto, mask_from_proto, session_options
from service.sessions.model import Event
from service.sessions.service import SessionService

_END = object()  # the queue's last item: the call completes normally
QUEUE_SIZE = 64  # bounds how far the relay runs ahead of a slow client


class TrackCall:
    """The state of one Track stream (its session, frames received, closing)."""

    def __init__(self, pb2: ModuleType, sessions: SessionService, tenant: str, served: tuple[str, int],
                 max_objects: int) -> None:
        self.pb2, self.sessions, self.tenant = pb2, sessions, tenant
        self.served, self.max_objects = served, max_objects
        self.out: asyncio.Queue[object] = asyncio.Queue(QUEUE_SIZE)
        self.sid: str | None = None
        self.received = 0  # frames appended so far: the index the next frame must carry
        self.closing = False
        self.tasks: list[asyncio.Task[None]] = []

    async def responses(self, requests: AsyncIterator[Message]) -> AsyncIterator[Message]:
        """The call's responses until the last run is done; raises what ended it otherwise."""
        self._spawn(self._read(requests))
        try:
            while True:
                item = await self.out.get()
                if item is _END:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            await self._stop_tasks()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        self.tasks.append(asyncio.create_task(coro))

    async def _stop_tasks(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    # ------------------------------------------------------------------ reader

    async def _read(self, requests: AsyncIterator[Message]) -> None:
        """Apply each client message in order; on half-close, let the passes finish."""
        try:
            async for req in requests:
                await self._apply(req)
            await self._close()
        except Exception as exc:  # handed to the response side, which maps it to a status
            await self.out.put(exc)

    async def _apply(self, req: Message) -> None:
        kind = req.WhichOneof("kind")
        if kind == "open":
            await self._open(req.open)
        elif self.sid is None:
            raise Conflict(f"the first Track message must be `open`, got `{kind or 'nothing'}`")
        elif kind == "frame":
            await self._frame(req.frame)
        elif kind == "annotate":
            a = req.annotate.annotation
            mask = mask_from_proto(a.mask, f"the correction mask of frame {a.frame}")
            await self.sessions.annotate(self.sid, self.tenant, int(a.frame), mask)
        else:
            raise InvalidInput("an empty TrackRequest: set `frame` or `annotate`")

    async def _open(self, msg: Message) -> None:
        if self.sid is not None:
            raise Conflict("the stream is already open: send `open` once, first")
        settings, labels = session_options(msg.options, self.served)
        meta = await self.sessions.create(self.tenant, [], stream=True, settings=settings, labels=labels)
        self.sid = meta.id
        await self.out.put(self.pb2.TrackResponse(opened=self.pb2.SessionOpened(session_id=meta.id)))
        self._spawn(self._relay(EventConverter(self.pb2, self.sessions, meta.id, self.tenant)))

    async def _frame(self, msg: Message) -> None:
        assert self.sid is not None
        if msg.index != self.received:
            raise InvalidInput(f"frame index {msg.index} is out of order: expected {self.received} "
                               f"(frames are numbered 0, 1, 2, ... in the order they are sent)")
        image = await asyncio.to_thread(image_from_proto, msg.image, f"frame {msg.index}")  # off the event loop
        mask = None
        if msg.HasField("mask"):
            mask = await asyncio.to_thread(mask_from_proto, msg.mask, f"the mask of frame {msg.index}")
            # checked before the frame is stored, so a bad mask leaves the session as it was
            check_mask(mask, (int(image.shape[0]), int(image.shape[1])), self.max_objects)
        await self.sessions.append(self.sid, self.tenant, [image])
        self.received += 1
        if mask is not None:
            await self.sessions.annotate(self.sid, self.tenant, int(msg.index), mask)

    async def _close(self) -> None:
        """Client half-close: no more frames. Ends now unless a run has frames to finish."""
        self.closing = True  # before close_stream: its done event may be relayed before it returns
        if self.sid is None:
            await self.out.put(_END)
            return
        await self.sessions.close_stream(self.sid, self.tenant)
        if await self._current_run() is None:
            await self.out.put(_END)

    # ------------------------------------------------------------------ relay

    async def _relay(self, conv: EventConverter) -> None:
        """Send the session's events; after half-close, stop at the current run's done."""
        try:
            async for ev in self.sessions.events(conv.sid, self.tenant, until_done=False):
                if ev.kind == "error":
                    await self._failed(ev)
                    continue
                converted = await conv.convert(ev)
                if converted is not None:
                    await self.out.put(self.pb2.TrackResponse(**{converted[0]: converted[1]}))
                if ev.kind == "done" and self.closing and ev.run == await self._current_run():
                    await self.out.put(_END)
                    return
        except Exception as exc:
            await self.out.put(exc)

    async def _failed(self, ev: Event) -> None:
        """A worker reported the current run failed: end the call (an older run's failure is moot)."""
        if ev.run == await self._current_run():
            raise failure_error(ev.code, ev.message)

    async def _current_run(self) -> int | None:
        assert self.sid is not None
        run = (await self.sessions.status(self.sid, self.tenant))["run"]
        return int(run["id"]) if isinstance(run, dict) else None

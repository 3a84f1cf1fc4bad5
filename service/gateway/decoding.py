"""Decoding uploads at the gateway: the configured limits on every entry, and off the event loop.

Every transport reads sequences through ``read_options`` (Settings' IMOS_MAX_FRAMES,
IMOS_MAX_FRAME_PIXELS and IMOS_MAX_REQUEST_BYTES, checked by the readers before they decode what
they can: a DICOM series' instance count, a NIfTI header, a zip's member list) and decodes in a
worker thread (``decode_volume``): a large upload decoded on the event loop would stall
every other request and stream the process serves, gRPC's included.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Sequence
from pathlib import Path

from service.errors import TooLarge
from service.io.medical.detect import ReadOptions, load_volume
from service.io.medical.volume import ReadLimits, Volume
from service.io.read_options import window_options
from service.settings import Settings


def read_limits(settings: Settings) -> ReadLimits:
    return ReadLimits(settings.max_request_bytes, settings.max_frames, settings.max_frame_pixels)


def read_options(settings: Settings, window: str | None = None, axis: int | None = None) -> ReadOptions:
    """The reader options of a request: its CT window / NIfTI axis, and the service's limits."""
    return dataclasses.replace(window_options(window, axis), limits=read_limits(settings))


async def decode_volume(settings: Settings, source: bytes | Sequence[bytes] | Path, filename: str | None = None,
                        options: ReadOptions | None = None) -> Volume:
    """load_volume with the service's limits, in a thread."""
    opts = options if options is not None else read_options(settings)
    return await asyncio.to_thread(load_volume, source, filename, None, opts)


def check_frame_count(settings: Settings, count: int) -> None:
    """Before decoding a list of frames one by one: refuse too many at once."""
    if count > settings.max_frames:
        raise TooLarge(f"{count} frames exceed the limit of {settings.max_frames} per session")

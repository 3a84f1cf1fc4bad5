"""A task's media, fetched from Label Studio (or wherever its URLs point) and decoded into frames.

Label Studio stores uploads under its own host (``/data/upload/...``): relative URLs are resolved
against the host Label Studio named in /setup (or IMOS_LABEL_STUDIO_URL) and fetched with its token
(``Authorization: Token ...``). The service's limits apply as on every entry: bytes while reading,
frames and pixels while decoding (off the event loop).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlparse

import httpx
import numpy as np

from service.errors import InvalidFrames, InvalidInput, TooLarge
from service.gateway.decoding import check_frame_count, decode_volume, read_options
from service.integrations.label_studio.config import Target
from service.io.images import decode_image
from service.settings import Settings

FETCH_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Connection:
    """Where Label Studio is and the token it gave ("" = none)."""

    host: str
    token: str


@dataclass(frozen=True)
class Media:
    """frames: [H, W] or [H, W, 3] uint8, one per frame or page; fps: a video's rate (0 = not a video);
    source: a short, pixel-free description of where the frames came from (for the session key)."""

    frames: list[np.ndarray]
    fps: float
    source: str


def urls(target: Target, data: Mapping[str, Any]) -> list[str]:
    """The media URL(s) of a task for the target: one for a video or image, a list for pages."""
    value = data.get(target.data_key) if isinstance(data, Mapping) else None
    if value is None:
        raise InvalidInput(f"the task has no data field {target.data_key!r} (the config reads "
                           f"${target.data_key})")
    items = value if isinstance(value, list) else [value]
    if not items or not all(isinstance(u, str) and u for u in items):
        raise InvalidInput(f"task data {target.data_key!r} must be a URL or a list of URLs")
    return list(items)


async def fetch(settings: Settings, conn: Connection, target: Target, data: Mapping[str, Any]) -> Media:
    """Download and decode the task's media under the service's limits."""
    links = urls(target, data)
    check_frame_count(settings, len(links))
    blobs = await _download(settings, conn, links)
    if target.kind == "images" and target.paged:
        frames = await asyncio.to_thread(_decode_pages, blobs, links)
        return Media(frames, 0.0, ",".join(links))
    volume = await decode_volume(settings, blobs[0], _name(links[0]), read_options(settings))
    return Media(list(volume.frames), float(volume.fps or 0.0) if target.kind == "video" else 0.0, links[0])


async def _download(settings: Settings, conn: Connection, links: Sequence[str]) -> list[bytes]:
    headers = {"Authorization": f"Token {conn.token}"} if conn.token else {}
    budget = settings.max_request_bytes
    out = []
    async with httpx.AsyncClient(timeout=FETCH_TIMEOUT_S, follow_redirects=True) as client:
        for link in links:
            data = await _get(client, _absolute(conn, link), headers, budget)
            budget -= len(data)
            out.append(data)
    return out


def _absolute(conn: Connection, link: str) -> str:
    if urlparse(link).scheme in ("http", "https"):
        return link
    if not conn.host:
        raise InvalidInput(f"the task's media URL {link!r} is relative and Label Studio's host is unknown: "
                           "connect the model from Label Studio (it sends its host in /setup) or set "
                           "IMOS_LABEL_STUDIO_URL")
    return urljoin(conn.host.rstrip("/") + "/", link.lstrip("/"))


async def _get(client: httpx.AsyncClient, url: str, headers: Mapping[str, str], budget: int) -> bytes:
    try:
        async with client.stream("GET", url, headers=headers) as resp:
            if resp.status_code != 200:
                raise InvalidInput(f"fetching the task's media gave HTTP {resp.status_code} "
                                   f"({_where(url)}); check the Label Studio token and the URL")
            chunks, size = [], 0
            async for chunk in resp.aiter_bytes():
                size += len(chunk)
                if size > budget:
                    raise TooLarge(f"the task's media exceed the limit of {budget} bytes")
                chunks.append(chunk)
    except httpx.HTTPError as exc:
        raise InvalidInput(f"cannot fetch the task's media from {_where(url)}: {type(exc).__name__}") from None
    return b"".join(chunks)


def _where(url: str) -> str:
    """Host and path only: query strings may carry signatures or tokens."""
    parts = urlparse(url)
    return f"{parts.netloc}{parts.path}"


def _name(link: str) -> str:
    return urlparse(link).path.rsplit("/", 1)[-1] or "media"


def _decode_pages(blobs: Sequence[bytes], links: Sequence[str]) -> list[np.ndarray]:
    frames = [decode_image(b, _name(u)) for b, u in zip(blobs, links)]
    shapes = {f.shape[:2] for f in frames}
    if len(shapes) > 1:
        raise InvalidFrames(f"the task's pages differ in size ({sorted(shapes)}): a sequence needs one size")
    return frames

"""Ultrasound and endoscopy videos (mp4, avi, mov, mkv) <-> uint8 frames, through PyAV (FFmpeg)."""

from __future__ import annotations

import io
import logging
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path
from typing import cast

import av
import numpy as np

from service.errors import InvalidFrames, TooLarge
from service.io.medical.volume import DEFAULT_LIMITS, ReadLimits, Volume

log = logging.getLogger(__name__)

_GREY_TOLERANCE = 8  # chroma noise of lossy codecs on a grey source stays below this many levels


def looks_like_video(data: bytes) -> bool:
    """ISO-BMFF (mp4/mov: 'ftyp' at 4), RIFF AVI, or Matroska/WebM (EBML magic)."""
    return (data[4:8] == b"ftyp" or (data[:4] == b"RIFF" and data[8:12] == b"AVI ")
            or data[:4] == b"\x1a\x45\xdf\xa3")


def read_video(data: bytes | Path, limits: ReadLimits = DEFAULT_LIMITS) -> Volume:
    """Video bytes or path -> Volume (kind "video") of [H, W] grey or [H, W, 3] RGB uint8 frames, with fps."""
    raw = data.read_bytes() if isinstance(data, Path) else bytes(data)
    if len(raw) > limits.max_bytes:
        raise TooLarge(f"the video exceeds {limits.max_bytes} bytes")
    try:
        with av.open(io.BytesIO(raw), mode="r") as container:
            frames, fps = _decode(container, limits)
    except av.FFmpegError as exc:
        # FFmpeg's message names the codec/container problem, never content.
        raise InvalidFrames(f"the video cannot be decoded: {exc.strerror or type(exc).__name__}") from None
    if not frames:
        raise InvalidFrames("the video holds no decodable frames")
    frames = _maybe_grey(frames)
    log.info("video read", extra={"frames": len(frames), "fps": fps})
    return Volume(frames=frames, kind="video", fps=fps)


def _decode(container: av.container.InputContainer, limits: ReadLimits) -> tuple[list[np.ndarray], float | None]:
    if not container.streams.video:
        raise InvalidFrames("the file holds no video stream")
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    width, height = stream.codec_context.width, stream.codec_context.height
    if width * height > limits.max_frame_pixels:
        raise TooLarge(f"video frames of {height}x{width} exceed the limit of {limits.max_frame_pixels} pixels")
    frames: list[np.ndarray] = []
    for frame in container.decode(stream):
        if len(frames) >= limits.max_frames:
            raise TooLarge(f"the video holds more than {limits.max_frames} frames")
        frames.append(frame.to_ndarray(format="rgb24"))
    rate = stream.average_rate or stream.guessed_rate
    return frames, (float(rate) if rate else None)


def _maybe_grey(frames: list[np.ndarray]) -> list[np.ndarray]:
    """RGB frames [H, W, 3] -> grey [H, W] when every frame is grey (most ultrasound), else unchanged."""
    for f in frames[:: max(1, len(frames) // 8)]:
        sample = f[::4, ::4].astype(np.int16)
        if np.abs(sample[..., 0] - sample[..., 1]).max() > _GREY_TOLERANCE \
                or np.abs(sample[..., 1] - sample[..., 2]).max() > _GREY_TOLERANCE:
            return frames
    return [f[..., 1].copy() for f in frames]  # green carries most of the luma


def encode_video(frames: Sequence[np.ndarray], fps: float = 25.0, container: str = "mp4",
                 codec: str = "h264", quality: int = 18) -> bytes:
    """Frames [H, W] or [H, W, 3] uint8 -> video bytes (mp4/mov with H.264, avi with MJPEG, ...).

    Odd sizes are padded by one pixel because 4:2:0 chroma needs even width and height.
    """
    if not frames:
        raise InvalidFrames("no frames to encode")
    h, w = frames[0].shape[:2]
    ph, pw = h + h % 2, w + w % 2
    buf = io.BytesIO()
    with av.open(buf, mode="w", format=container) as out:
        stream = cast(av.video.stream.VideoStream, out.add_stream(codec, rate=Fraction(fps).limit_denominator(1000)))
        stream.width, stream.height = pw, ph
        stream.pix_fmt = "yuvj420p" if codec == "mjpeg" else "yuv420p"
        if codec in ("h264", "libx264"):
            stream.options = {"crf": str(quality), "preset": "veryfast"}
        else:  # MJPEG and friends: FFmpeg's default bit rate blurs; ask for near-lossless frames
            stream.bit_rate = int(4 * pw * ph * max(fps, 1.0))  # about 4 bits per pixel
        for f in frames:
            rgb = np.repeat(f[..., None], 3, axis=2) if f.ndim == 2 else f
            rgb = np.pad(rgb, ((0, ph - h), (0, pw - w), (0, 0)), mode="edge")
            out.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")))
        out.mux(stream.encode(None))
    return buf.getvalue()

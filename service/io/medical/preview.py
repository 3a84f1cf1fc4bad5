"""Previews for humans: frames with coloured masks as an animated GIF or MP4, and a contact-sheet PNG."""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw

from service.errors import InvalidFrames, InvalidInput, InvalidMask
from service.io.images import davis_palette
from service.io.medical.video import encode_video

_PALETTE = np.array(davis_palette(), dtype=np.uint8).reshape(256, 3)


def overlay(frame: np.ndarray, labels: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """Frame [H, W] or [H, W, 3] uint8 + labels [H, W] -> RGB [H, W, 3]: tinted objects, solid outlines."""
    if frame.shape[:2] != labels.shape:
        raise InvalidMask(f"labels {labels.shape} do not match the frame {frame.shape[:2]}")
    rgb = np.repeat(frame[..., None], 3, axis=2) if frame.ndim == 2 else frame
    colours = _PALETTE[np.asarray(labels, dtype=np.int64) % 256]
    inside = labels > 0
    out = rgb.astype(np.float32)
    out[inside] = (1 - alpha) * out[inside] + alpha * colours[inside]
    edge = _edges(labels)
    out[edge] = colours[edge]
    return out.clip(0, 255).astype(np.uint8)


def _edges(labels: np.ndarray) -> np.ndarray:
    """Object pixels [H, W] whose right or lower neighbour has another label."""
    edge = np.zeros(labels.shape, dtype=bool)
    edge[:, :-1] |= labels[:, :-1] != labels[:, 1:]
    edge[:-1, :] |= labels[:-1, :] != labels[1:, :]
    return edge & (labels > 0)


def _scaled(image: np.ndarray, max_side: int) -> Image.Image:
    """RGB [H, W, 3] -> PIL image whose longer side is ``max_side`` (tiny MRI crops are enlarged too)."""
    im = Image.fromarray(image)
    scale = max_side / max(im.size)
    size = (max(1, round(im.width * scale)), max(1, round(im.height * scale)))
    return im.resize(size, Image.Resampling.NEAREST if scale > 1 else Image.Resampling.BILINEAR)


def _checked(frames: Sequence[np.ndarray], labels: Sequence[np.ndarray]) -> None:
    if not frames:
        raise InvalidFrames("no frames to preview")
    if len(frames) != len(labels):
        raise InvalidMask(f"{len(labels)} label frames for {len(frames)} frames")


def select_frames(labels: Sequence[np.ndarray], count: int = 12) -> list[int]:
    """Up to ``count`` frame indices spread evenly over the frames that show an object (all if none does)."""
    shown = [t for t, lab in enumerate(labels) if np.any(lab)] or list(range(len(labels)))
    if len(shown) <= count:
        return shown
    picks = np.linspace(0, len(shown) - 1, count).round().astype(int)
    return [shown[i] for i in sorted(set(picks.tolist()))]


def contact_sheet(frames: Sequence[np.ndarray], labels: Sequence[np.ndarray], indices: Sequence[int] | None = None,
                  columns: int = 4, tile: int = 256, annotated: int | None = None) -> bytes:
    """Selected frames with their overlays in a grid, each captioned with its frame number -> PNG bytes.
    ``annotated``: the frame the mask was drawn on, always shown, captioned so and framed in yellow."""
    _checked(frames, labels)
    picks = list(indices) if indices is not None else select_frames(labels)
    if annotated is not None and 0 <= annotated < len(frames) and annotated not in picks:
        picks = sorted(picks + [annotated])
    if not picks or any(not 0 <= t < len(frames) for t in picks):
        raise InvalidInput("contact sheet frame indices must lie within the sequence")
    tiles = [_scaled(overlay(frames[t], labels[t]), tile) for t in picks]
    cell_w, cell_h = max(t.width for t in tiles), max(t.height for t in tiles) + 16
    cols = max(1, min(columns, len(tiles)))
    rows = -(-len(tiles) // cols)
    sheet = Image.new("RGB", (cols * cell_w, rows * cell_h), (0, 0, 0))
    draw = ImageDraw.Draw(sheet)
    for n, (t, im) in enumerate(zip(picks, tiles)):
        x, y = (n % cols) * cell_w, (n // cols) * cell_h
        sheet.paste(im, (x, y + 16))
        given = t == annotated
        draw.text((x + 3, y + 2), f"frame {t}" + (" (annotated)" if given else ""),
                  fill=(255, 220, 0) if given else (255, 255, 255))
        if given:
            draw.rectangle((x, y + 16, x + im.width - 1, y + 16 + im.height - 1), outline=(255, 220, 0), width=3)
    buf = io.BytesIO()
    sheet.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def overlay_gif(frames: Sequence[np.ndarray], labels: Sequence[np.ndarray], fps: float = 10.0,
                max_side: int = 384) -> bytes:
    """All frames with overlays as a looping animated GIF -> bytes."""
    _checked(frames, labels)
    images = [_scaled(overlay(f, lab), max_side).convert("P", palette=Image.Palette.ADAPTIVE, colors=255)
              for f, lab in zip(frames, labels)]
    buf = io.BytesIO()
    duration = max(20, round(1000 / max(fps, 0.1)))  # browsers clamp GIF delays below 20 ms
    images[0].save(buf, format="GIF", save_all=True, append_images=images[1:], duration=duration, loop=0)
    return buf.getvalue()


def overlay_mp4(frames: Sequence[np.ndarray], labels: Sequence[np.ndarray], fps: float = 10.0,
                max_side: int = 512) -> bytes:
    """All frames with overlays as an H.264 MP4 -> bytes."""
    _checked(frames, labels)
    rgb = [np.asarray(_scaled(overlay(f, lab), max_side)) for f, lab in zip(frames, labels)]
    return encode_video(rgb, fps=fps, container="mp4", codec="h264")

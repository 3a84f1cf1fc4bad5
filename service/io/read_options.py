"""ReadOptions from the user's words: a window preset or LEVEL,WIDTH, and a NIfTI axis."""

from __future__ import annotations

from service.errors import InvalidInput
from service.io.medical.detect import ReadOptions
from service.io.medical.intensity import IntensityOptions


def window_options(window: str | None, axis: int | None = None) -> ReadOptions:
    if window is None or not window.strip():
        return ReadOptions(axis=axis)
    if "," in window:
        try:
            level, width = (float(v) for v in window.split(","))
        except ValueError:
            raise InvalidInput(f"window wants a preset name or LEVEL,WIDTH, got {window!r}") from None
        return ReadOptions(intensity=IntensityOptions(level=level, width=width), axis=axis)
    return ReadOptions(intensity=IntensityOptions(preset=window.strip()), axis=axis)

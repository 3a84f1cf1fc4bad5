"""Turn modality values (HU, MR signal, ...) into uint8 display frames: CT windows or robust min-max."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from service.errors import InvalidFrames, InvalidInput


@dataclass(frozen=True)
class Window:
    """A display window in modality units (HU for CT): ``level`` is the centre, ``width`` the span."""

    level: float
    width: float


# Common radiology presets (HU); values as taught in radiology references.
PRESETS: dict[str, Window] = {
    "abdomen": Window(40.0, 400.0),
    "liver": Window(30.0, 150.0),
    "lung": Window(-600.0, 1500.0),
    "bone": Window(400.0, 1800.0),
    "brain": Window(40.0, 80.0),
    "mediastinum": Window(50.0, 350.0),
}


@dataclass(frozen=True)
class IntensityOptions:
    """How to map values to 0..255.

    ``preset`` names a CT window in :data:`PRESETS`; ``level``/``width`` give one explicitly (both or none);
    with neither, a series' own window is used where it has one, else min-max within ``percentiles``.
    """

    preset: str | None = None
    level: float | None = None
    width: float | None = None
    percentiles: tuple[float, float] = (0.5, 99.5)

    def explicit_window(self) -> Window | None:
        """The window the caller asked for, or None; raises InvalidInput for a bad request."""
        if (self.level is None) != (self.width is None):
            raise InvalidInput("give both window level and width, or neither")
        if self.preset is not None and self.level is not None:
            raise InvalidInput("give a window preset or an explicit level/width, not both")
        if self.preset is not None:
            key = self.preset.lower()
            if key not in PRESETS:
                raise InvalidInput(f"unknown window preset {self.preset!r}; known: {', '.join(sorted(PRESETS))}")
            return PRESETS[key]
        if self.level is not None and self.width is not None:
            if not self.width > 0:
                raise InvalidInput("window width must be positive")
            return Window(float(self.level), float(self.width))
        return None


DEFAULT_INTENSITY = IntensityOptions()


def apply_window(values: np.ndarray, window: Window) -> np.ndarray:
    """Values [...] -> uint8 [...]: linear ramp from level - width/2 (0) to level + width/2 (255)."""
    lo = window.level - window.width / 2.0
    scaled = (values.astype(np.float32) - lo) * (255.0 / window.width)
    return np.clip(np.nan_to_num(scaled, nan=0.0) + 0.5, 0, 255).astype(np.uint8)


Rescale = tuple[float, float]  # (slope, intercept): modality value = stored * slope + intercept


def _values(raw: np.ndarray, rescale: Rescale) -> np.ndarray:
    slope, intercept = rescale
    return raw.astype(np.float32) * np.float32(slope) + np.float32(intercept)


def percentile_window(raw: Sequence[np.ndarray], rescale: Sequence[Rescale],
                      percentiles: tuple[float, float]) -> Window:
    """The window spanning two percentiles of the WHOLE volume (frames [H, W], sampled every 4th pixel).

    One range for the whole volume keeps slices comparable (a per-slice range would flicker); sampling
    keeps the cost small for big volumes without moving the percentiles noticeably.
    """
    step = 4 if raw[0].size >= 64 * 64 else 1
    sample = np.concatenate([_values(r[::step, ::step], s).ravel() for r, s in zip(raw, rescale)])
    sample = sample[np.isfinite(sample)]
    if sample.size == 0:
        raise InvalidFrames("the image holds no finite values")
    lo, hi = (float(v) for v in np.percentile(sample, percentiles))
    return Window((lo + hi) / 2.0, (hi - lo) or 1.0)


def display_frames(raw: Sequence[np.ndarray], rescale: Sequence[Rescale], options: IntensityOptions,
                   own: Window | None, is_ct: bool) -> list[np.ndarray]:
    """Stored frames [H, W] (any numeric dtype) -> uint8 [H, W] by the rule in :class:`IntensityOptions`.

    ``own`` is the series' stored window, used only when the caller gave none (callers pass None for
    non-CT data, which is scaled by percentiles). Presets are in HU, so they are refused for non-CT data,
    where they would give a meaningless picture.
    """
    window = options.explicit_window()
    if window is not None and options.preset is not None and not is_ct:
        raise InvalidInput(f"window preset {options.preset!r} is in Hounsfield units and this is not CT; "
                           "give level/width or none")
    if window is None:
        window = own or percentile_window(raw, rescale, options.percentiles)
    return [apply_window(_values(r, s), window) for r, s in zip(raw, rescale)]

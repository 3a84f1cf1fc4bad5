"""The value every medical reader returns: display frames plus what writers need to map results back."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import numpy as np
from pydicom.dataset import Dataset

if TYPE_CHECKING:
    import nibabel as nib

VolumeKind = Literal["dicom", "nifti", "video", "images"]


@dataclass(frozen=True)
class ReadLimits:
    """Upper bounds checked before decoding, so a hostile upload fails early (TooLarge)."""

    max_bytes: int = 1 << 30
    max_frames: int = 5000
    max_frame_pixels: int = 4096 * 4096


DEFAULT_LIMITS = ReadLimits()


@dataclass(frozen=True, eq=False)
class DicomSource:
    """Where each display frame came from in a DICOM series.

    ``datasets`` are the source instances' headers (pixel data dropped to save memory) in frame order
    for a single-frame series, or the one multi-frame instance. ``frame_refs[t]`` is
    ``(index into datasets, 0-based frame number inside that instance)`` for display frame ``t``.
    """

    datasets: tuple[Dataset, ...]
    frame_refs: tuple[tuple[int, int], ...]
    modality: str
    multiframe: bool = False

    def source_frame_count(self) -> int:
        """Frames of the source pixel data (the SEG writer indexes this space, not display order)."""
        if self.multiframe:
            return int(getattr(self.datasets[0], "NumberOfFrames", 1) or 1)
        return len(self.datasets)


@dataclass(frozen=True, eq=False)
class NiftiSource:
    """How display frames map back onto the NIfTI voxel grid.

    ``affine`` [4, 4] and ``header`` are the input's; ``shape`` is the 3-D voxel shape; ``ornt`` [3, 2] is
    nibabel's orientation transform from the file's axes to closest-canonical RAS; ``axis`` is the file's
    voxel axis the frames were cut along.
    """

    affine: np.ndarray
    header: nib.Nifti1Header  # a Nifti2Header for NIfTI-2 input (its subclass)
    shape: tuple[int, int, int]
    ornt: np.ndarray
    axis: int


@dataclass(frozen=True, eq=False)
class Volume:
    """A medical sequence ready for the model.

    ``frames``: T arrays of uint8, each [H, W] (grey) or [H, W, 3] (RGB), all the same shape.
    ``spacing``: (row mm, column mm, slice mm) when known. ``fps`` for videos and cine loops.
    """

    frames: list[np.ndarray]
    kind: VolumeKind
    dicom: DicomSource | None = None
    nifti: NiftiSource | None = None
    fps: float | None = None
    spacing: tuple[float, float, float] | None = None
    notes: tuple[str, ...] = field(default=())

    @property
    def shape(self) -> tuple[int, int]:
        """(H, W) of every frame."""
        return (int(self.frames[0].shape[0]), int(self.frames[0].shape[1]))

    def __len__(self) -> int:
        return len(self.frames)


@dataclass(frozen=True, eq=False)
class Annotation:
    """One annotated frame: ``mask`` [H, W] int64 labels (0 = background) on frame ``frame`` (None: not stated)."""

    mask: np.ndarray
    frame: int | None


def object_names(ids: Sequence[int], names: Sequence[str] | Mapping[int, str] | None) -> dict[int, str]:
    """Object id -> label: a mapping by id, a list for ids 1, 2, ..., default "Object N"."""
    out = {}
    for i in ids:
        if isinstance(names, Mapping):
            name = names.get(i)
        else:
            name = names[i - 1] if names is not None and 0 < i <= len(names) else None
        out[i] = (name or f"Object {i}")[:64]  # DICOM LO length; COCO names follow the same rule
    return out

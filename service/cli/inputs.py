"""Reading the CLI's inputs in every supported format (shared by segment and its remote mode)."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from service.errors import InvalidMask
from service.io.medical.detect import ReadOptions, load_annotation, load_volume
from service.io.medical.volume import Volume
from service.io.read_options import window_options


def add_input_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--window", default=None,
                   help="CT window: a preset (abdomen, liver, lung, bone, brain, mediastinum) or LEVEL,WIDTH")
    p.add_argument("--axis", type=int, default=None, help="NIfTI voxel axis to slice along (default: closest to axial)")


def read_options(args: argparse.Namespace) -> ReadOptions:
    return window_options(args.window, args.axis)


def read_volume(path: Path, args: argparse.Namespace) -> Volume:
    """DICOM folder/zip/file, NIfTI, video, PNG/JPEG folder or zip, or .npy (auto-detected)."""
    return load_volume(path, options=read_options(args))


def read_annotation(path: Path, volume: Volume, frame: int | None) -> tuple[np.ndarray, int]:
    """-> (mask [H, W], annotated frame). The frame comes from --frame or from the mask file itself."""
    if not path.is_file():
        raise InvalidMask(f"mask file {path} does not exist")
    ann = load_annotation(path.read_bytes(), volume, path.name)
    index = frame if frame is not None else ann.frame
    if index is None:
        raise InvalidMask("say which frame the mask annotates with --frame K (an index PNG does not say)")
    if frame is not None and ann.frame is not None and frame != ann.frame:
        raise InvalidMask(f"--frame {frame} disagrees with the mask file, which annotates frame {ann.frame}")
    return ann.mask, index

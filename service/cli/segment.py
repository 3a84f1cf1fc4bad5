"""``imos segment``: propagate one mask through a sequence on this machine."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from service.cli.common import Progress, add_repo_arg, default_model, parse_sets, repo_root
from service.cli.inputs import add_input_args, read_annotation, read_options, read_volume
from service.engine.backends import BACKENDS
from service.errors import InvalidInput
from service.io.images import write_masks
from service.io.medical.volume import Volume
from service.io.outputs import encode_results, parse_names
from service.sessions.model import DIRECTIONS

if TYPE_CHECKING:  # torch only where frames are propagated here, not for --server or --help
    from service.engine.propagate import FrameResult, Propagator

FORMATS_CLI = ("png", "npy", "seg", "nifti", "nrrd", "rle")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("segment", help="propagate one annotated mask through every frame")
    p.add_argument("input", type=Path, nargs="?", default=None,
                   help="DICOM series (folder/zip), NIfTI, video (mp4/avi/mov), PNG/JPEG folder or zip, or .npy")
    p.add_argument("--mask", type=Path, required=True,
                   help="index PNG or .npy (H x W), NIfTI labelmap or DICOM SEG labelling one slice")
    p.add_argument("--frame", type=int, default=None, help="annotated frame (implied by a NIfTI/SEG mask)")
    p.add_argument("--format", choices=FORMATS_CLI, default="png",
                   help="png: OUTDIR/00000.png...; npy, seg (DICOM input), nifti / nrrd (NIfTI or NRRD input), "
                        "rle: one file in OUTDIR")
    p.add_argument("--labels", default=None, help="object names, e.g. 1=Liver,2=Tumour (SEG and RLE outputs)")
    p.add_argument("--seg-type", choices=("binary", "labelmap"), default="binary",
                   help="--format seg: binary (classic Segmentation Storage, read everywhere) or labelmap "
                        "(Label Map Segmentation Storage, 2024)")
    p.add_argument("--preview", action="store_true", help="also write OUTDIR/preview.gif and contact_sheet.png")
    p.add_argument("--dicomweb", default=None, help="DICOMweb root URL of a PACS to pull the series from")
    p.add_argument("--study", default=None, help="StudyInstanceUID (with --dicomweb)")
    p.add_argument("--series", default=None, help="SeriesInstanceUID (with --dicomweb)")
    p.add_argument("--store", action="store_true", help="store the DICOM SEG back into the PACS (with --dicomweb)")
    add_input_args(p)
    p.add_argument("--direction", choices=DIRECTIONS, default="both")
    p.add_argument("--model", default=None, help="model name in the repository (default: the bundled one)")
    p.add_argument("--backend", choices=BACKENDS, default="torch")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    p.add_argument("--precision", choices=("fp32", "fp16", "bf16", "int8", "auto"), default="fp32",
                   help="bf16 (torch), fp16 (CUDA), int8 (--backend onnx), auto (the fastest on this host)")
    p.add_argument("--set", action="append", metavar="NAME=VALUE",
                   help="memory setting by XMem's name (top_k, mem_every, ..., size)")
    p.add_argument("--save-probs", type=Path, default=None, help="write DIR/probs.npy (T x (K+1) x H x W)")
    p.add_argument("-o", "--output", type=Path, required=True, help="output folder for 00000.png ...")
    p.add_argument("--server", default=None,
                   help="a running service: http(s)://HOST:PORT for REST, or [grpc://]HOST:PORT for gRPC")
    p.add_argument("--quiet", action="store_true")
    add_repo_arg(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    volume = _volume(args)
    mask, frame = read_annotation(args.mask, volume, args.frame)
    args.frame = frame
    if args.server:
        labels, served = run_remote(args, volume.frames, mask)
        model = served or "unknown:0"  # outputs (a SEG's algorithm) name the server's model
    else:
        from service.engine.loader import load_engine

        engine = load_engine(repo_root(args), args.model or default_model(), args.backend, args.device,
                             args.precision)
        labels, probs = _propagate(engine.propagator(parse_sets(args.set)), volume.frames, mask, args)
        if args.save_probs is not None:
            args.save_probs.mkdir(parents=True, exist_ok=True)
            np.save(args.save_probs / "probs.npy", probs)
        model = engine.model_id
    written = write_outputs(args, volume, labels, model)
    print(f"wrote {written} (model {model})")
    return 0


def _volume(args: argparse.Namespace) -> Volume:
    if args.dicomweb:
        if not (args.study and args.series):
            raise InvalidInput("--dicomweb needs --study and --series")
        from service.pacs import pull_series

        return pull_series(args.dicomweb, args.study, args.series, read_options(args))
    if args.input is None:
        raise InvalidInput("give an INPUT path, or --dicomweb URL --study UID --series UID")
    return read_volume(args.input, args)


def _propagate(prop: Propagator, frames: list[np.ndarray], mask: np.ndarray,
               args: argparse.Namespace) -> tuple[list[np.ndarray], np.ndarray]:
    total = len(frames) if args.direction == "both" else _count(len(frames), args)
    progress = Progress(total, "segment", args.quiet)
    results: dict[int, FrameResult] = {}
    for res in prop.run(frames, mask, args.frame, args.direction):
        results[res.index] = res
        progress.advance()
    return assemble(results, len(frames))


def write_outputs(args: argparse.Namespace, volume: Volume, labels: list[np.ndarray], model: str) -> str:
    """Write the chosen format (and previews) into OUTDIR; store the SEG in the PACS when asked."""
    out: Path = args.output
    out.mkdir(parents=True, exist_ok=True)
    names = parse_names(args.labels)
    if args.format == "png":
        write_masks(out, labels)
        what = f"{len(labels)} masks to {out}"
    else:
        enc = encode_results(args.format, labels, volume, names, model, args.seg_type)
        target = out / f"masks{enc.suffix}"
        target.write_bytes(enc.data)
        what = str(target)
        if args.store and args.dicomweb and args.format == "seg":
            from service.pacs import store_instances

            store_instances(args.dicomweb, [enc.data])
            what += " (stored in the PACS)"
    if args.store and args.format != "seg":
        raise InvalidInput("--store sends a DICOM SEG: use it with --format seg")
    if args.preview:
        from service.io.medical.preview import contact_sheet, overlay_gif

        (out / "preview.gif").write_bytes(overlay_gif(volume.frames, labels, fps=volume.fps or 10.0))
        (out / "contact_sheet.png").write_bytes(contact_sheet(volume.frames, labels, annotated=args.frame))
    return what


def run_remote(args: argparse.Namespace, frames: list[np.ndarray],
               mask: np.ndarray) -> tuple[list[np.ndarray], str | None]:
    """Client mode: the same inputs and outputs, computed by a running service; (masks, the server's
    "name:version" of the model)."""
    if args.save_probs is not None:
        raise InvalidInput("--save-probs is only available locally: the service returns masks, not probabilities")
    progress = Progress(len(frames), "segment", args.quiet)
    seen = 0

    def on_progress(done: int, total: int) -> None:
        nonlocal seen
        progress.total = max(total, 1)
        progress.advance(max(done - seen, 0))
        seen = max(seen, done)

    settings = parse_sets(args.set)
    if args.server.startswith(("http://", "https://")):
        from service.rest_client import RestClient

        client = RestClient(args.server, os.environ.get("IMOS_API_KEY"))
        try:
            return client.segment(frames, mask, args.frame, args.direction, settings, on_progress), client.model
        finally:
            client.close()
    from service.client import segment_remote_with_model

    return segment_remote_with_model(args.server, frames, mask, args.frame, args.direction, settings, on_progress)


def _count(n: int, args: argparse.Namespace) -> int:
    return n - args.frame if args.direction == "forward" else args.frame + 1


def assemble(results: dict[int, FrameResult], num_frames: int) -> tuple[list[np.ndarray], np.ndarray]:
    """Per-frame results -> index masks for every frame and probs [T, 1+K, H, W].

    Frames no pass reached (the other side of a one-direction run) are background.
    Objects that joined later have probability 0 on frames processed before.
    """
    last = max(results.values(), key=lambda r: len(r.object_ids))
    ids, (h, w) = last.object_ids, last.probs.shape[1:]
    probs = np.zeros((num_frames, 1 + len(ids), h, w), np.float32)
    probs[:, 0] = 1.0
    labels = []
    for t in range(num_frames):
        res = results.get(t)
        if res is not None:
            probs[t] = 0.0
            probs[t, : res.probs.shape[0]] = res.probs
            labels.append(res.labels())
        else:
            labels.append(np.zeros((h, w), np.uint8))
    return labels, probs

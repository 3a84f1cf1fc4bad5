"""``imos segment``: propagate one mask through a sequence on this machine."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

from service.cli.common import Progress, add_repo_arg, default_model, parse_sets, repo_root
from service.engine.loader import BACKENDS, load_engine
from service.engine.propagate import DIRECTIONS, FrameResult
from service.errors import InvalidInput
from service.io.images import read_frames, read_mask, write_masks


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("segment", help="propagate one annotated mask through every frame")
    p.add_argument("input", type=Path, help="folder of PNG/JPEG frames (name order) or a .npy T x H x W(x3)")
    p.add_argument("--mask", type=Path, required=True, help="index PNG or .npy (H x W, 0 = background)")
    p.add_argument("--frame", type=int, required=True, help="index of the annotated frame")
    p.add_argument("--direction", choices=DIRECTIONS, default="both")
    p.add_argument("--model", default=None, help="model name in the repository (default: the bundled one)")
    p.add_argument("--backend", choices=BACKENDS, default="torch")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    p.add_argument("--precision", choices=("fp32", "fp16", "bf16"), default="fp32")
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
    frames = read_frames(args.input)
    mask = read_mask(args.mask)
    if args.server:
        return run_remote(args, frames, mask)
    engine = load_engine(repo_root(args), args.model or default_model(), args.backend, args.device, args.precision)
    prop = engine.propagator(parse_sets(args.set))
    progress = Progress(len(frames) if args.direction == "both" else _count(len(frames), args), "segment",
                        args.quiet)
    results: dict[int, FrameResult] = {}
    for res in prop.run(frames, mask, args.frame, args.direction):
        results[res.index] = res
        progress.advance()
    labels, probs = assemble(results, len(frames))
    write_masks(args.output, labels)
    if args.save_probs is not None:
        args.save_probs.mkdir(parents=True, exist_ok=True)
        np.save(args.save_probs / "probs.npy", probs)
    print(f"wrote {len(labels)} masks to {args.output} (model {engine.model_id}, backend {engine.stages.name})")
    return 0


def run_remote(args: argparse.Namespace, frames: list[np.ndarray], mask: np.ndarray) -> int:
    """Client mode: the same inputs and outputs, computed by a running service."""
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
            labels = client.segment(frames, mask, args.frame, args.direction, settings, on_progress)
        finally:
            client.close()
    else:
        from service.client import segment_remote

        labels = segment_remote(args.server, frames, mask, args.frame, args.direction, settings, on_progress)
    write_masks(args.output, labels)
    print(f"wrote {len(labels)} masks to {args.output} (server {args.server})")
    return 0


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

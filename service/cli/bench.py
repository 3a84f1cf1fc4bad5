"""``imos bench``: benchmarks with JSON output (compare ratios within one run)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from service.cli.common import add_repo_arg, default_model, repo_root


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="benchmarks (JSON)")
    kinds = p.add_subparsers(dest="kind", required=True)
    e = kinds.add_parser("engine", help="frames/s and peak memory of the engine per backend")
    e.add_argument("--model", default=None)
    e.add_argument("--backend", default="torch,onnx", help="comma-separated: torch, onnx, tensorrt")
    e.add_argument("--size", type=int, default=480, help="frame height and width in pixels")
    e.add_argument("--frames", type=int, default=20)
    e.add_argument("--objects", type=int, default=1)
    e.add_argument("--device", default="cpu")
    e.add_argument("--precision", default="fp32", help="comma-separated: fp32, bf16 (torch), fp16 (CUDA), int8 "
                   "(onnx), auto; each backend runs the precisions it has")
    e.add_argument("--threads", type=int, default=None,
                   help="CPU threads for torch and onnxruntime (default: all cores)")
    e.add_argument("--compile", action="store_true", help="torch backend: torch.compile the stages")
    e.add_argument("--json", type=Path, default=None, help="also write the report here")
    e.add_argument("--set", action="append", metavar="NAME=VALUE",
                   help="memory settings over the model's own (e.g. flow_weight=0 to price flow fusion)")
    add_repo_arg(e)
    e.set_defaults(func=run_engine)

    rd = kinds.add_parser("reader", help="memory read: XMem's dense affinity vs the gathered top-k read, per size")
    rd.add_argument("--device", default="cpu")
    rd.add_argument("--queries", type=int, default=900, help="query positions per frame (900 at 480p)")
    rd.add_argument("--sizes", default="900,2700,9000,19000", help="comma-separated memory sizes N")
    rd.add_argument("--value-dim", type=int, default=512)
    rd.add_argument("--threads", type=int, default=None)
    rd.add_argument("--json", type=Path, default=None)
    rd.set_defaults(func=run_reader_cmd)

    sb = kinds.add_parser("state", help="memory-state bytes (fp32/fp16) and checkpoint cost vs frame time")
    sb.add_argument("--model", default=None)
    sb.add_argument("--size", type=int, default=480)
    sb.add_argument("--frames", type=int, default=30)
    sb.add_argument("--objects", type=int, default=1)
    sb.add_argument("--checkpoint-every", type=int, default=10,
                    help="frames between checkpoints, for the full-vs-delta bytes (IMOS_CHECKPOINT_EVERY)")
    sb.add_argument("--json", type=Path, default=None)
    add_repo_arg(sb)
    sb.set_defaults(func=run_state_cmd)

    sv = kinds.add_parser("serving", help="one sequence in-process vs REST one-shot, REST sessions, gRPC Track")
    sv.add_argument("--model", default=None)
    sv.add_argument("--size", type=int, default=480)
    sv.add_argument("--frames", type=int, default=100)
    sv.add_argument("--repeats", type=int, default=1)
    sv.add_argument("--backend", choices=("torch", "onnx", "tensorrt"), default="torch",
                    help="the in-process engine and the served one both use it")
    sv.add_argument("--precision", default="fp32", help="fp32, bf16 (torch), fp16 (CUDA), int8 (onnx)")
    sv.add_argument("--redis", default=None, metavar="URL",
                    help="keep the served copy's sessions in this Redis (as deployed) instead of in its memory")
    sv.add_argument("--json", type=Path, default=None)
    add_repo_arg(sv)
    sv.set_defaults(func=run_serving_cmd)

    ld = kinds.add_parser("load", help="concurrent sessions over REST and gRPC against a running service")
    ld.add_argument("--server", required=True, help="REST base URL, e.g. http://127.0.0.1:8000")
    ld.add_argument("--grpc", default=None, help="gRPC HOST:PORT; odd sessions use Track when given")
    ld.add_argument("--sessions", type=int, default=16)
    ld.add_argument("--frames", type=int, default=100)
    ld.add_argument("--size", type=int, default=64, help="frame height and width of the generated sequences")
    ld.add_argument("--set", action="append", metavar="NAME=VALUE")
    ld.add_argument("--json", type=Path, default=None)
    ld.set_defaults(func=run_load_cmd)
    _register_batching(kinds)


def _emit(report: dict[str, Any], path: Path | None) -> None:
    """Print the report as JSON and also write it to ``path`` when given."""
    text = json.dumps(report, indent=2)
    if path:
        path.write_text(text)
    print(text)


def _has_precision(backend: str, precision: str) -> bool:
    """onnxruntime on CPU computes in fp32 or int8; int8 exists on the onnx backend only; auto on all
    (it reports what it measured and chose)."""
    if precision == "auto":
        return True
    return precision in ("fp32", "int8") if backend == "onnx" else precision != "int8"


def run_engine(args: argparse.Namespace) -> int:
    from service.bench.engine import machine, run_isolated
    from service.cli.common import parse_sets

    settings = parse_sets(args.set)
    precisions = [p.strip() for p in args.precision.split(",")]
    runs = [run_isolated(repo_root(args), args.model or default_model(), b.strip(), args.size, args.frames,
                         args.objects, args.device, p, args.threads, args.compile, settings)
            for b in args.backend.split(",") for p in precisions
            if _has_precision(b.strip(), p)]
    ok = [r for r in runs if "frames_per_s" in r]
    report = {"bench": "engine", "machine": machine(), "runs": runs}
    if len(ok) > 1:
        base = ok[0]["frames_per_s"]
        name = (lambda r: r["backend"]) if len(precisions) == 1 else (lambda r: f"{r['backend']} {r['precision']}")
        report["ratio_to_first"] = {name(r): round(r["frames_per_s"] / base, 3) for r in ok}
    _emit(report, args.json)
    return 0


def run_reader_cmd(args: argparse.Namespace) -> int:
    import torch

    from service.bench.engine import machine
    from service.bench.reader import measure_reader

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    sizes = tuple(int(n) for n in args.sizes.split(","))
    report = {"bench": "reader", "machine": machine(),
              **measure_reader(args.device, args.queries, sizes, value_dim=args.value_dim)}
    _emit(report, args.json)
    return 0


def run_load_cmd(args: argparse.Namespace) -> int:
    from service.bench.load import run_load
    from service.cli.common import parse_sets

    report = {"bench": "load", **run_load(args.server, args.grpc, args.sessions, args.frames, args.size,
                                          parse_sets(args.set))}
    _emit(report, args.json)
    return 0 if not report["errors"] else 1


def run_state_cmd(args: argparse.Namespace) -> int:
    from service.bench.state import measure_state

    report = {"bench": "state", **measure_state(repo_root(args), args.model or default_model(), args.size,
                                                args.frames, args.objects,
                                                checkpoint_every=max(args.checkpoint_every, 1))}
    _emit(report, args.json)
    return 0


def run_serving_cmd(args: argparse.Namespace) -> int:
    from service.bench.serving import measure_serving

    report = {"bench": "serving", **measure_serving(repo_root(args), args.model or default_model(), args.size,
                                                    args.frames, args.repeats, args.backend, args.precision,
                                                    args.redis)}
    _emit(report, args.json)
    return 0


def _register_batching(kinds: argparse._SubParsersAction) -> None:
    bt = kinds.add_parser("batching", help="frames/s of 1..8 concurrent sessions with and without dynamic batching")
    bt.add_argument("--model", default=None)
    bt.add_argument("--size", type=int, default=240, help="frame height and width in pixels")
    bt.add_argument("--frames", type=int, default=12, help="frames per session")
    bt.add_argument("--sessions", default="1,2,4,8", help="comma-separated concurrent session counts")
    bt.add_argument("--objects", type=int, default=1)
    bt.add_argument("--backend", default="torch")
    bt.add_argument("--device", default="cpu")
    bt.add_argument("--precision", default="fp32")
    bt.add_argument("--max-batch", type=int, default=8)
    bt.add_argument("--max-delay-ms", type=float, default=2.0)
    bt.add_argument("--json", type=Path, default=None)
    add_repo_arg(bt)
    bt.set_defaults(func=run_batching_cmd)


def run_batching_cmd(args: argparse.Namespace) -> int:
    from service.bench.batching import measure_batching
    from service.bench.engine import machine
    from service.engine.batching import BatchConfig

    sessions = tuple(int(n) for n in args.sessions.split(","))
    report = {"bench": "batching", "machine": machine(),
              **measure_batching(repo_root(args), args.model or default_model(), args.size, args.frames, sessions,
                                 args.objects, args.backend, args.device, args.precision,
                                 BatchConfig(args.max_batch, args.max_delay_ms))}
    _emit(report, args.json)
    return 0

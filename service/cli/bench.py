"""``imos bench``: benchmarks with JSON output (compare ratios within one run)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

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
    e.add_argument("--precision", default="fp32")
    e.add_argument("--json", type=Path, default=None, help="also write the report here")
    add_repo_arg(e)
    e.set_defaults(func=run_engine)

    sb = kinds.add_parser("state", help="memory-state bytes (fp32/fp16) and checkpoint cost vs frame time")
    sb.add_argument("--model", default=None)
    sb.add_argument("--size", type=int, default=480)
    sb.add_argument("--frames", type=int, default=30)
    sb.add_argument("--objects", type=int, default=1)
    sb.add_argument("--json", type=Path, default=None)
    add_repo_arg(sb)
    sb.set_defaults(func=run_state_cmd)

    sv = kinds.add_parser("serving", help="one sequence in-process vs REST one-shot, REST sessions, gRPC Track")
    sv.add_argument("--model", default=None)
    sv.add_argument("--size", type=int, default=480)
    sv.add_argument("--frames", type=int, default=100)
    sv.add_argument("--repeats", type=int, default=1)
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


def run_engine(args: argparse.Namespace) -> int:
    from service.bench.engine import machine, run_isolated

    runs = [run_isolated(repo_root(args), args.model or default_model(), b.strip(), args.size, args.frames,
                         args.objects, args.device, args.precision) for b in args.backend.split(",")]
    ok = [r for r in runs if "frames_per_s" in r]
    report = {"bench": "engine", "machine": machine(), "runs": runs}
    if len(ok) > 1:
        base = ok[0]["frames_per_s"]
        report["ratio_to_first"] = {r["backend"]: round(r["frames_per_s"] / base, 3) for r in ok}
    text = json.dumps(report, indent=2)
    if args.json:
        args.json.write_text(text)
    print(text)
    return 0


def run_load_cmd(args: argparse.Namespace) -> int:
    from service.bench.load import run_load
    from service.cli.common import parse_sets

    report = {"bench": "load", **run_load(args.server, args.grpc, args.sessions, args.frames, args.size,
                                          parse_sets(args.set))}
    text = json.dumps(report, indent=2)
    if args.json:
        args.json.write_text(text)
    print(text)
    return 0 if not report["errors"] else 1


def run_state_cmd(args: argparse.Namespace) -> int:
    from service.bench.state import measure_state

    report = {"bench": "state", **measure_state(repo_root(args), args.model or default_model(), args.size,
                                                args.frames, args.objects)}
    text = json.dumps(report, indent=2)
    if args.json:
        args.json.write_text(text)
    print(text)
    return 0


def run_serving_cmd(args: argparse.Namespace) -> int:
    from service.bench.serving import measure_serving

    report = {"bench": "serving", **measure_serving(repo_root(args), args.model or default_model(), args.size,
                                                    args.frames, args.repeats)}
    text = json.dumps(report, indent=2)
    if args.json:
        args.json.write_text(text)
    print(text)
    return 0

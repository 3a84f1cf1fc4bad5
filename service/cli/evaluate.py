"""``imos eval``: score a model or a baseline on a DAVIS-layout folder (J, F, J&F per protocol)."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from service.cli.common import Progress, add_repo_arg, parse_sets, repo_root
from service.engine.backends import BACKENDS
from service.evaluation.report import result_json, table
from service.evaluation.runner import Options, evaluate, prepare
from service.evaluation.trackers import BASELINES, make_tracker


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("eval", help="evaluate a model or baseline on a DAVIS-layout folder (J&F)",
                       description="Run the 'first' and/or 'best' protocol (protocols.json when the folder has "
                                   "one, else derived from the annotations) and report J, F and J&F per "
                                   "object, sequence, dataset and overall.")
    p.add_argument("root", type=Path, help="folder with JPEGImages/<seq>/ and Annotations/<seq>/")
    p.add_argument("--model", required=True,
                   help=f"model name in the repository, or a baseline: {', '.join(BASELINES)}")
    p.add_argument("--protocol", choices=("first", "best", "both"), default="both")
    p.add_argument("--size", type=int, default=None, help="shorter side frames are resized to (-1: native); "
                                                          "default: the model's own setting")
    p.add_argument("--set", action="append", metavar="NAME=VALUE", help="other memory settings (XMem names)")
    p.add_argument("--json", type=Path, default=None, help="write the full results (per sequence) here")
    p.add_argument("--save-predictions", type=Path, default=None, metavar="DIR",
                   help="write DIR/<protocol>/<seq>/<frame>.png index masks")
    p.add_argument("--sequences", default=None, metavar="GLOB",
                   help="only sequences whose name matches (comma-separated globs: any of them)")
    p.add_argument("--backend", choices=BACKENDS, default="torch")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    p.add_argument("--precision", choices=("fp32", "bf16", "fp16", "int8", "auto"), default="fp32",
                   help="compute precision: bf16 (torch; CPU or CUDA), fp16 (CUDA), int8 (--backend onnx), "
                        "auto (the fastest of these on this host)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_repo_arg(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    protocols = ("first", "best") if args.protocol == "both" else (args.protocol,)
    options = Options(protocols=protocols, pattern=args.sequences, save_dir=args.save_predictions)
    overrides: dict[str, str | int | bool] = dict(parse_sets(args.set))
    if args.size is not None:
        overrides["size"] = args.size
    tracker = make_tracker(args.model, repo_root(args), args.backend, args.device, overrides, args.precision)
    jobs = prepare(args.root, options)
    progress = Progress(sum(j.steps for j in jobs), f"eval {tracker.name}", args.quiet)
    start = time.perf_counter()
    result = evaluate(args.root, tracker, options, jobs, progress.advance)
    seconds = time.perf_counter() - start
    print(f"model {tracker.name} on {args.root}: {len(jobs)} sequences, protocol {', '.join(protocols)}")
    print(table(result))
    print(f"{result.steps} frames in {seconds:.1f} s ({result.steps / max(seconds, 1e-9):.1f} frames/s)")
    if args.json is not None:
        settings = {"protocols": list(protocols), "sequences": args.sequences, "backend": args.backend,
                    "device": args.device, "overrides": dict(overrides),
                    "precision": getattr(getattr(tracker, "engine", None), "precision", args.precision)}
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result_json(result, seconds, settings), indent=1))
        print(f"wrote {args.json}")
    return 0

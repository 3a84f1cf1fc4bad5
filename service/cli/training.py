"""``imos train``, ``imos finetune`` and ``imos average``."""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import sys
from pathlib import Path

from service.cli.common import add_repo_arg, repo_root
from service.training.config import TrainConfig, load_config

DEFAULT_FINETUNE_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "imos-lite-finetune.yaml"



def _datasets(args: argparse.Namespace) -> tuple[str, ...]:
    return tuple(d.strip() for d in args.datasets.split(",") if d.strip())


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    t = sub.add_parser("train", help="train a model with XMem's staged recipe (static, then sequences)",
                       description="Stage 0 on static images as pseudo-sequences, then real sequences (clips "
                                   "growing 3 -> 8 frames), plus synthetic sequences. Checkpoints and log.jsonl "
                                   "go to --out; the result is written to the model repository.")
    t.add_argument("--config", type=Path, required=True, help="training YAML (see configs/)")
    t.add_argument("--out", type=Path, required=True, help="folder for log.jsonl, checkpoints, best weights")
    t.add_argument("--name", default=None, help="model repository entry to write (default: the config's name)")
    t.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in --out")
    t.add_argument("--stop-at", type=int, default=None, metavar="STEP",
                   help="stop at this step and write the model (best so far); the learning-rate schedule stays "
                        "the full run's, so resuming later without it continues the same run")
    t.add_argument("--time-limit", type=float, default=None, metavar="SECONDS",
                   help="stop at the first step that ends this long after the start, as --stop-at would "
                        "(for a fixed time budget, e.g. a lent GPU; size --steps to the budget too)")
    _common(t)
    t.set_defaults(func=run_train)

    f = sub.add_parser("finetune", help="tune Conv-Parallel adapters + decoder of a repository model",
                       description="Encoders frozen; adapters (identity at start) and the decoder are trained. "
                                   "Writes model_repo/OUT with the base model, data, steps and scores.")
    f.add_argument("--base", required=True, help="repository model to start from")
    f.add_argument("--out", required=True, help="name of the new repository entry")
    f.add_argument("--config", type=Path, default=DEFAULT_FINETUNE_CONFIG, help="fine-tuning YAML")
    f.add_argument("--work-dir", type=Path, default=None, help="logs and checkpoints (default: out/finetune-OUT)")
    f.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in --work-dir")
    _common(f)
    f.set_defaults(func=run_finetune)

    a = sub.add_parser("average", help="average the weights of several checkpoints of one training run",
                       description="Writes model_repo/OUT: the architecture and settings of --like with the "
                                   "element-wise mean of the checkpoints' weights (offline weight averaging).")
    a.add_argument("checkpoints", type=Path, help="the run's --out folder (step-NNNNNNN.pt files)")
    a.add_argument("--steps", required=True, help="comma-separated checkpoint steps, e.g. 1200,1300,1400,1500")
    a.add_argument("--like", required=True, help="repository entry whose architecture and settings to copy")
    a.add_argument("--out", required=True, help="name of the new repository entry")
    add_repo_arg(a)
    a.set_defaults(func=run_average)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", type=Path, nargs="+", required=True, metavar="ROOT",
                   help="DAVIS-layout training roots (one-frame sequences = static pairs); never the dev set")
    p.add_argument("--datasets", default="", help="only these datasets (name prefix before '__'), comma-separated, "
                   "e.g. hippocampus,hc18 for weights that may ship (see the data licences)")
    p.add_argument("--steps", type=int, default=None, help="total iterations (stages scaled in proportion)")
    p.add_argument("--device", default=None, help="cpu, cuda[:N] or auto (default: the config's)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: the config's)")
    p.add_argument("--eval-root", type=Path, default=None, help="dev folder for periodic evaluation "
                                                                 "(default: the config's eval.root)")
    p.add_argument("--no-eval", action="store_true", help="no periodic evaluation")
    add_repo_arg(p)


def _load(args: argparse.Namespace) -> TrainConfig:
    cfg = load_config(args.config)
    if args.steps is not None:
        cfg = cfg.with_steps(args.steps)
    if args.threads is not None:
        cfg = dataclasses.replace(cfg, threads=args.threads)
    return cfg


def _command() -> str:
    return shlex.join(["imos", *sys.argv[1:]])


def run_train(args: argparse.Namespace) -> int:
    from service.training.trainer import TrainRequest, train

    req = TrainRequest(config=_load(args), data=tuple(args.data), out_dir=args.out, repo_root=repo_root(args),
                       name=args.name, resume=args.resume, device=args.device, eval_root=args.eval_root,
                       no_eval=args.no_eval, command=_command(), config_path=str(args.config),
                       datasets=_datasets(args), stop_at=args.stop_at,
                       time_limit_s=args.time_limit)
    entry = train(req)
    print(f"wrote {entry.name}:{entry.version} -> {entry.weights_path}")
    return 0


def run_finetune(args: argparse.Namespace) -> int:
    from service.training.finetune import FinetuneRequest, finetune

    work = args.work_dir or Path("out") / f"finetune-{args.out}"
    req = FinetuneRequest(base=args.base, data=tuple(args.data), name=args.out, repo_root=repo_root(args),
                          config=_load(args), work_dir=work, resume=args.resume, device=args.device,
                          eval_root=args.eval_root, no_eval=args.no_eval, command=_command(),
                          config_path=str(args.config), datasets=_datasets(args))
    entry = finetune(req)
    print(f"wrote {entry.name}:{entry.version} -> {entry.weights_path}")
    return 0


def run_average(args: argparse.Namespace) -> int:
    from service.errors import InvalidInput
    from service.training.averaging import average_into

    try:
        steps = [int(s) for s in args.steps.split(",") if s.strip()]
    except ValueError:
        raise InvalidInput(f"--steps wants comma-separated integers, got {args.steps!r}") from None
    record = average_into(args.checkpoints, steps, repo_root(args), args.like, args.out)
    print(f"wrote {args.out}: mean of steps {record['steps']} of {args.checkpoints}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m service.cli.training train|finetune ...``: the same as ``imos train|finetune``."""
    from service.errors import ImosError

    parser = argparse.ArgumentParser(prog="imos")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except ImosError as exc:
        print(f"imos: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())


"""How many training steps fit in the seconds left, from a calibration run's log.jsonl.

    python scripts/gpu_plan.py LOG.jsonl SECONDS_LEFT [--margin S] [--round N] [--max N]

Prints the step count (a multiple of --round, at least --round). The calibration run has the real run's
stages in proportion (imos train --steps scales them), so its mean seconds per step, the first few
(CUDA start, first batches) left out, stands for the whole run.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def seconds_per_step(log: Path, skip: int = 5) -> float:
    rows = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    secs = [r["seconds"] for r in rows if r.get("event", "step") == "step" and "seconds" in r]
    if not secs:
        raise SystemExit(f"{log}: no training steps logged")
    kept = secs[skip:] if len(secs) > skip * 2 else secs
    return sum(kept) / len(kept)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("log", type=Path)
    ap.add_argument("left", type=float)
    ap.add_argument("--margin", type=float, default=60.0, help="seconds kept for evaluations and writing")
    ap.add_argument("--round", type=int, default=100)
    ap.add_argument("--max", type=int, default=40000)
    args = ap.parse_args()
    rate = seconds_per_step(args.log)
    steps = int(max(0.0, args.left - args.margin) / rate + 1e-6) // args.round * args.round
    print(min(max(steps, args.round), args.max))


if __name__ == "__main__":
    main()

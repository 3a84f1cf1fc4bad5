"""Training logs: one JSON object per line in OUT/log.jsonl, a short line on stderr every N steps.

Lines: {"event": "step", step, stage, loss, ce, dice, p, lr, grad_norm, frames, objects, sources,
seconds, time}; {"event": "eval", ...evaluator result}; {"event": "note", "message"}.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Any

from service.training.data import ClipBatch
from service.training.losses import LossTerms


class Logbook:
    """Appends to the log file (a resumed run continues the same file)."""

    def __init__(self, path: Path, every: int) -> None:
        self.path = path
        self.every = max(1, every)
        self._window: list[dict[str, float]] = []
        self._last: dict[str, float] = {}

    def _write(self, record: dict[str, Any]) -> None:
        record = {**record, "time": round(time.time(), 3)}
        with self.path.open("a") as f:
            f.write(json.dumps(record, allow_nan=True) + "\n")

    def note(self, message: str) -> None:
        self._write({"event": "note", "message": message})
        print(f"imos train: {message}", file=sys.stderr, flush=True)

    def step(self, step: int, stage: str, terms: LossTerms, grad_norm: float, lr: float, batch: ClipBatch,
             seconds: float) -> None:
        values = {"loss": float(terms.total.detach()), "ce": float(terms.ce), "dice": float(terms.dice)}
        self._write({"event": "step", "step": step, "stage": stage, **{k: round(v, 5) for k, v in values.items()},
                     "p": round(terms.p, 4), "lr": lr, "grad_norm": round(grad_norm, 4),
                     "frames": int(batch.images.shape[1]), "objects": batch.num_objects,
                     "sources": list(batch.sources), "seconds": round(seconds, 4)})
        self._window.append({**values, "seconds": seconds})
        if (step + 1) % self.every == 0:
            self._last = {k: sum(w[k] for w in self._window) / len(self._window) for k in self._window[0]}
            self._window = []
            m = self._last
            print(f"step {step + 1} [{stage}] loss {m['loss']:.4f} (ce {m['ce']:.4f} dice {m['dice']:.4f}) "
                  f"p {terms.p:.2f} lr {lr:.2e} T {batch.images.shape[1]} {m['seconds']:.2f} s/it",
                  file=sys.stderr, flush=True)

    def eval(self, result: dict[str, Any]) -> None:
        self._write({"event": "eval", **result})
        per = ", ".join(f"{k} {v['J&F']:.3f}" for k, v in result["protocols"].items())
        print(f"eval at step {result['step']}: J&F {per} ({result['sequences']} sequences, "
              f"{result['seconds']:.0f} s)", file=sys.stderr, flush=True)

    def recent(self) -> dict[str, float]:
        """Mean loss terms over the last full window (or the partial one when none is full)."""
        if self._last:
            return {k: round(v, 5) for k, v in self._last.items() if not math.isnan(v)}
        if self._window:
            return {k: round(sum(w[k] for w in self._window) / len(self._window), 5) for k in self._window[0]}
        return {}

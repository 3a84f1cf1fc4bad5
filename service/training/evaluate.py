"""Periodic dev-subset evaluation of the network being trained, through service.evaluation.

Dev data is used for model selection only: the evaluator reads frames to score predictions and
never hands anything back to the training loop but numbers.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from service.engine.backends.torch_backend import TorchStages
from service.engine.nn.network import ImosNet
from service.engine.propagate import Propagator
from service.engine.spec import MemoryConfig
from service.evaluation.runner import Options, evaluate, prepare
from service.evaluation.trackers import PropagatorTracker


class NetTracker(PropagatorTracker):
    """An in-memory network driven exactly like a repository model (evaluation.trackers.ModelTracker)."""

    needs_frames = True

    def __init__(self, net: ImosNet, memory: MemoryConfig, device: str, name: str) -> None:
        stages = TorchStages(net, device=device)
        self.propagator = Propagator(stages, memory, name, net.spec.max_objects)
        self.name = name


class DevEvaluator:
    """Scores a copy of the network on ROOT's sequences matching ``pattern`` at shorter side ``size``."""

    def __init__(self, root: Path, pattern: str | None, size: int, protocols: tuple[str, ...], device: str,
                 memory: Mapping[str, Any] | None = None) -> None:
        """memory: other memory settings (XMem names), as the model will be served with them."""
        self.root = Path(root)
        self.options = Options(protocols=protocols, pattern=pattern)
        self.jobs = prepare(self.root, self.options)
        self.memory = MemoryConfig(size=size).with_overrides(dict(memory or {}))
        self.device = device

    def __call__(self, net: ImosNet, step: int) -> dict[str, Any]:
        """{"step", "score" (mean overall J&F over protocols), "protocols": {name: {J&F, J, F,
        datasets: {name: J&F}}}, "sequences", "seconds"}."""
        start = time.perf_counter()
        tracker = NetTracker(copy.deepcopy(net).eval(), self.memory, self.device, f"train@{step}")
        result = evaluate(self.root, tracker, self.options, self.jobs)
        protocols = {}
        for name, summary in result.summaries.items():
            protocols[name] = {"J&F": _num(summary.overall.jf), "J": _num(summary.overall.j),
                               "F": _num(summary.overall.f),
                               "datasets": {d: _num(m.jf) for d, m in summary.datasets.items()}}
        score = float(np.mean([p["J&F"] for p in protocols.values()]))
        return {"step": step, "score": round(score, 4), "protocols": protocols, "sequences": len(self.jobs),
                "size": self.memory.size, "seconds": round(time.perf_counter() - start, 1)}


def _num(x: float) -> float:
    return round(float(x), 4) if np.isfinite(x) else float("nan")

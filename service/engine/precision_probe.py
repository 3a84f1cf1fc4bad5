"""``precision=auto`` by measurement: time each precision the backend offers here and keep the fastest
whose masks agree with fp32's.

CPU flags say what a CPU can do, not what a runtime does with it: on an Intel Xeon with AMX, ONNX
Runtime's int8 graphs ran at 2.6 frames/s against fp32's 8.7, while on an AMD EPYC int8 was the
fastest. So the candidates a backend offers (engine.precision.candidates, prefiltered by the flags
that make a precision pointless, e.g. emulated bf16) each propagate one short synthetic sequence;
a candidate must be at least ``MIN_GAIN`` faster than fp32 in that same run and agree with fp32's
masks to ``MIN_AGREEMENT`` (mean IoU of every object), else fp32 stays. The result is cached per
model version, backend, device, CPU model and runtime versions under the model's build folder
(``precision-auto.json``), so workers after the first start at once.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from service.engine.precision import Choice
from service.errors import BackendUnavailable

log = logging.getLogger("imos.engine")

MIN_GAIN = 1.10
MIN_AGREEMENT = 0.95
PROBE_FRAMES, PROBE_SIDE, WARM_FRAMES = 10, 384, 3
CACHE_NAME = "precision-auto.json"


@dataclass(frozen=True)
class Trial:
    """One candidate's run: steady frames per second, and mean IoU of its masks with fp32's."""

    precision: str
    frames_per_s: float
    agreement: float


def pick(trials: list[Trial]) -> Choice:
    """The fastest trial that agrees with fp32 and beats it by MIN_GAIN; fp32 otherwise."""
    base = next(t for t in trials if t.precision == "fp32")
    good = [t for t in trials if t.precision != "fp32" and t.agreement >= MIN_AGREEMENT
            and t.frames_per_s >= MIN_GAIN * base.frames_per_s]
    table = ", ".join(f"{t.precision} {t.frames_per_s:.1f} frames/s (IoU {t.agreement:.3f})" for t in trials)
    if not good:
        return Choice("fp32", f"measured: {table}; nothing beat fp32 by {MIN_GAIN - 1:.0%} with the same masks")
    best = max(good, key=lambda t: t.frames_per_s)
    return Choice(best.precision, f"measured: {table}")


def probe(run: Callable[[list[np.ndarray], np.ndarray], list[np.ndarray]]) -> tuple[float, list[np.ndarray]]:
    """Propagate the probe sequence with ``run(frames, mask) -> labels per frame``: (steady frames/s,
    labels). The first WARM_FRAMES frames (allocations, lazy initialisation) are not timed."""
    from service.bench.synthetic_video import moving_ellipses

    frames, masks = moving_ellipses(PROBE_FRAMES, PROBE_SIDE, PROBE_SIDE, 2)
    run(frames[:WARM_FRAMES], masks[0])
    started = time.perf_counter()
    labels = run(frames, masks[0])
    return len(frames) / (time.perf_counter() - started), labels


def agreement(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    """Mean IoU over every object of every frame (1 where both leave an object out)."""
    scores = []
    for x, y in zip(a, b):
        for obj in set(np.unique(x)) | set(np.unique(y)):
            if obj == 0:
                continue
            union = np.logical_or(x == obj, y == obj).sum()
            scores.append(np.logical_and(x == obj, y == obj).sum() / union if union else 1.0)
    return float(np.mean(scores)) if scores else 1.0


def measure(candidates: tuple[str, ...], runner: Callable[[str], Callable[..., list[np.ndarray]]]) -> Choice:
    """Run the probe for fp32 and each candidate (``runner(precision)`` builds its propagation; a
    candidate that cannot load here is left out) and pick."""
    fps, ref = probe(runner("fp32"))
    trials = [Trial("fp32", fps, 1.0)]
    for precision in candidates:
        if precision == "fp32":
            continue
        try:
            run = runner(precision)
        except BackendUnavailable as exc:
            log.info("precision auto: candidate unavailable", extra={"precision": precision, "reason": str(exc)})
            continue
        fps, labels = probe(run)
        trials.append(Trial(precision, fps, agreement(ref, labels)))
    return pick(trials)


def cached(path: Path, key: str) -> Choice | None:
    try:
        entry = json.loads(path.read_text()).get(key)
    except (OSError, ValueError):
        return None
    return Choice(entry["precision"], entry["reason"]) if isinstance(entry, dict) else None


def remember(path: Path, key: str, choice: Choice) -> None:
    """Add the choice to the cache file (atomically: workers may start together)."""
    try:
        table = json.loads(path.read_text())
    except (OSError, ValueError):
        table = {}
    table[key] = {**asdict(choice), "measured_at": time.time()}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{time.monotonic_ns()}.tmp")
    tmp.write_text(json.dumps(table, indent=1))
    tmp.replace(path)

"""Results as a terminal table and as JSON (per object, sequence, dataset and overall)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from service.evaluation.runner import Result
from service.evaluation.scoring import Mean, ObjectScore, SequenceScore, Summary


def _num(x: float) -> float | None:
    """JSON has no NaN: nothing scored is written as null."""
    return None if math.isnan(x) else round(x, 6)


def _mean_json(m: Mean, count_name: str) -> dict[str, Any]:
    return {"J&F": _num(m.jf), "J": _num(m.j), "F": _num(m.f), count_name: m.count}


def _object_json(o: ObjectScore) -> dict[str, Any]:
    out = _mean_json(o.mean, "num_frames")
    out["frames"] = {f: {"J": _num(j), "F": _num(fm)} for f, j, fm in zip(o.frames, o.j, o.f)}
    return out


def _sequence_json(s: SequenceScore, seconds: float | None) -> dict[str, Any]:
    out = {"dataset": s.dataset, **_mean_json(s.mean, "num_objects")}
    out["objects"] = {str(o.object_id): _object_json(o) for o in s.objects}
    if seconds is not None:
        out["seconds_all_protocols"] = round(seconds, 3)
    return out


def summary_json(summary: Summary, seconds: Mapping[str, float]) -> dict[str, Any]:
    """One protocol: overall (mean over datasets), datasets (mean over sequences), sequences."""
    return {"overall": _mean_json(summary.overall, "num_datasets"),
            "datasets": {d: _mean_json(m, "num_sequences") for d, m in summary.datasets.items()},
            "sequences": {s.name: _sequence_json(s, seconds.get(s.name)) for s in summary.sequences}}


def result_json(result: Result, seconds: float, settings: Mapping[str, Any]) -> dict[str, Any]:
    """The whole run: settings, timing and each protocol's summary."""
    return {"model": result.model, "root": str(result.root), "settings": dict(settings),
            "timing": {"seconds": round(seconds, 3), "frames_processed": result.steps,
                       "frames_per_second": round(result.steps / seconds, 2) if seconds > 0 else None},
            "protocols": {p: summary_json(s, result.seconds) for p, s in result.summaries.items()}}


def _cell(m: Mean | None) -> str:
    if m is None or m.count == 0:
        return f"{'-':>7} {'-':>6} {'-':>6}"
    return f"{m.jf:7.3f} {m.j:6.3f} {m.f:6.3f}"


def table(result: Result) -> str:
    """Datasets (rows) x protocols (J&F, J, F), then the overall row."""
    protocols = list(result.summaries)
    names = sorted({d for s in result.summaries.values() for d in s.datasets})
    width = max([len(n) for n in names] + [len("overall")])
    head = f"{'dataset':<{width}} {'seqs':>4}  " + "  ".join(f"{p + ' J&F':>7} {'J':>6} {'F':>6}" for p in protocols)
    lines = [head, "-" * len(head)]
    for name in names:
        count = max(s.datasets[name].count for s in result.summaries.values() if name in s.datasets)
        cells = "  ".join(_cell(result.summaries[p].datasets.get(name)) for p in protocols)
        lines.append(f"{name:<{width}} {count:>4}  {cells}")
    lines.append("-" * len(head))
    total = sum(len(s.sequences) for s in result.summaries.values()) // max(len(protocols), 1)
    cells = "  ".join(_cell(result.summaries[p].overall) for p in protocols)
    lines.append(f"{'overall':<{width}} {total:>4}  {cells}")
    return "\n".join(lines)

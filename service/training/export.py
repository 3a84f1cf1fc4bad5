"""Writing a trained network to the model repository with its provenance."""

from __future__ import annotations

import json
import platform
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from service.engine.repo import ModelEntry, ModelRepo
from service.engine.spec import ModelSpec
from service.training.loop import Outcome


def scores_summary(outcome: Outcome) -> dict[str, Any]:
    """The dev-subset numbers worth keeping in model.yaml: every eval's score, the best, the last."""
    if not outcome.evals:
        return {}
    last = outcome.evals[-1]
    return {"evals": [{"step": e["step"], "score": e["score"]} for e in outcome.evals],
            "best": outcome.best, "last": last}


def provenance(outcome: Outcome, data: Sequence[Path], command: str, device: str, extra: dict[str, Any],
               data_summary: dict[str, int]) -> dict[str, Any]:
    """The provenance block of model.yaml (plain YAML types only: a JSON round trip drops tuples
    and str subclasses such as torch's version string)."""
    block = {"command": command, "data": [str(Path(d).resolve()) for d in data], "data_summary": data_summary,
            "steps": outcome.steps, "wall_time_s": round(outcome.wall, 1), "device": device,
            "torch": torch.__version__, "python": platform.python_version(), "final_losses": outcome.losses,
            "dev_subset": scores_summary(outcome), "sessions": list(outcome.sessions), **extra}
    return json.loads(json.dumps(block, default=str))


def write_entry(repo_root: Path, name: str, spec: ModelSpec, outcome: Outcome, description: str,
                size: int, prov: dict[str, Any], memory: Mapping[str, Any] | None = None) -> ModelEntry:
    """model_repo/NAME/model.yaml + NAME/1/weights.safetensors (trained weights, memory size ``size``
    plus the other memory settings in ``memory``)."""
    meta = {"description": description, "trained": True, "weights": "trained",
            "preprocessing": {"normalisation": "imagenet", "size": size}, "provenance": prov}
    return ModelRepo(repo_root).write(name, spec, outcome.state, meta, memory={"size": size, **dict(memory or {})})

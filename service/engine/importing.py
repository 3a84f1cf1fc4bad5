"""``imos import-checkpoint``: an XMem-layout .pth -> a model repository entry."""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

from service.engine.checkpoint import check_keys, infer_spec, pad_single_object, read_state_dict
from service.engine.hashing import file_sha256
from service.engine.repo import ModelEntry, ModelRepo


def import_checkpoint(path: Path, repo: ModelRepo, name: str, version: int = 1,
                      description: str | None = None) -> ModelEntry:
    """Validate the checkpoint strictly, pad single-object weights, write model.yaml + safetensors."""
    sd = read_state_dict(path)
    spec = infer_spec(sd)
    check_keys(sd, spec)
    single = spec.value_input_channels == 4
    if single:
        sd = pad_single_object(sd)
        spec = dataclasses.replace(spec, value_input_channels=5)
    meta = {
        "description": description or f"imported from {path.name}",
        "trained": True,
        "provenance": {
            "source_file": path.name,
            "source_sha256": file_sha256(path),
            "imported_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "single_object_source": single,
            "tensors": len(sd),
        },
    }
    return repo.write(name, spec, sd, meta, version=version)

"""The model repository: ``<root>/<name>/model.yaml`` + ``<root>/<name>/<version>/weights.safetensors``."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from service.engine.spec import MemoryConfig, ModelSpec
from service.errors import ModelError, NotFound

if TYPE_CHECKING:  # reading model.yaml needs no torch (the gateway reads it); loading weights does
    import torch

    from service.engine.nn.network import ImosNet

_NAME_OK = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")


@dataclass(frozen=True)
class ModelEntry:
    """One model version: its architecture, default memory settings and metadata."""

    name: str
    version: int
    directory: Path
    spec: ModelSpec
    memory: MemoryConfig
    meta: Mapping[str, Any] = field(default_factory=dict)

    @property
    def weights_path(self) -> Path:
        return self.directory / str(self.version) / "weights.safetensors"

    @property
    def build_dir(self) -> Path:
        return self.directory / str(self.version) / "build"


def default_repo_root() -> Path:
    """IMOS_MODEL_REPO, else the ``model_repo/`` folder of this checkout."""
    env = os.environ.get("IMOS_MODEL_REPO")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / "model_repo"


def check_name(name: str) -> str:
    if not name or not set(name) <= _NAME_OK or name.startswith("."):
        raise ModelError(f"invalid model name {name!r}: use letters, digits, '-', '_' and '.'")
    return name


class ModelRepo:
    """Reads and writes model entries under one root folder."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if (p / "model.yaml").is_file())

    def entry(self, name: str, version: int | None = None) -> ModelEntry:
        directory = self.root / check_name(name)
        meta_path = directory / "model.yaml"
        if not meta_path.is_file():
            known = ", ".join(self.names()) or "none"
            raise NotFound(f"model {name!r} not found in {self.root} (available: {known})")
        try:
            meta = yaml.safe_load(meta_path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ModelError(f"{name}/model.yaml is not valid YAML: {exc}") from None
        versions = sorted(int(p.name) for p in directory.iterdir() if p.name.isdigit())
        if not versions:
            raise ModelError(f"model {name!r} has no numbered version folder")
        chosen = versions[-1] if version is None else version
        if chosen not in versions:
            raise NotFound(f"model {name!r} has no version {chosen} (have {versions})")
        spec = ModelSpec.from_dict(meta.get("architecture", {}))
        memory = MemoryConfig().with_overrides(meta.get("memory", {}))
        return ModelEntry(name, chosen, directory, spec, memory, meta)

    def load_network(self, entry: ModelEntry) -> ImosNet:
        from safetensors.torch import load_file

        from service.engine.checkpoint import build_network
        from service.engine.nn.network import ImosNet
        from service.engine.synthetic import synthetic_for

        if entry.meta.get("weights") == "synthetic":
            # Architecture-only entries (benchmarks): deterministic weights by the fixture's rule.
            net = ImosNet(entry.spec)
            net.load_state_dict(synthetic_for(net), strict=True)
            return net.eval()
        if not entry.weights_path.is_file():
            raise ModelError(f"weights missing: {entry.weights_path}")
        return build_network(load_file(str(entry.weights_path)), entry.spec)

    def write(self, name: str, spec: ModelSpec, state_dict: Mapping[str, torch.Tensor],
              meta: Mapping[str, Any], memory: Mapping[str, Any] | None = None,
              version: int = 1) -> ModelEntry:
        """Write model.yaml (architecture, memory, metadata) and the weights."""
        from safetensors.torch import save_file

        directory = self.root / check_name(name)
        (directory / str(version)).mkdir(parents=True, exist_ok=True)
        doc = {"name": name, **dict(meta), "architecture": _plain(spec.to_dict()), "memory": dict(memory or {})}
        (directory / "model.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
        tensors = {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}
        save_file(tensors, str(directory / str(version) / "weights.safetensors"))
        return self.entry(name, version)


def _plain(value: Any) -> Any:
    """Tuples -> lists so that YAML stays readable."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value

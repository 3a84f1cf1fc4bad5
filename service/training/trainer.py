"""``imos train``: a model from scratch (or from ``init`` weights) with XMem's staged recipe."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from service.engine.nn.network import ImosNet
from service.engine.repo import ModelEntry, ModelRepo
from service.engine.spec import ModelSpec
from service.errors import BackendUnavailable, ModelError
from service.training.config import TrainConfig
from service.training.data import ClipSampler
from service.training.evaluate import DevEvaluator
from service.training.export import provenance, write_entry
from service.training.loop import Job, run
from service.training.sources import DataSources


@dataclass(frozen=True)
class TrainRequest:
    """One ``imos train`` invocation. eval_root overrides the config's (None: keep it);
    no_eval switches evaluation off; command: the command line, for provenance."""

    config: TrainConfig
    data: tuple[Path, ...]
    out_dir: Path
    repo_root: Path
    name: str | None = None
    resume: bool = False
    device: str | None = None
    eval_root: Path | None = None
    no_eval: bool = False
    datasets: tuple[str, ...] = ()
    stop_at: int | None = None
    time_limit_s: float | None = None
    command: str = ""
    config_path: str | None = None


def pick_device(requested: str) -> torch.device:
    """cpu, cuda[:N], or auto (CUDA when torch sees a GPU)."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise BackendUnavailable("device cuda requested but torch sees no CUDA GPU here")
    return torch.device(requested)


def _merge(base: Mapping[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in changes.items():
        out[k] = _merge(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), Mapping) else v
    return out


def resolve_spec(architecture: Mapping[str, Any], repo: ModelRepo) -> ModelSpec:
    """A ModelSpec dict, or ``base: NAME`` (that entry's architecture) plus field overrides."""
    arch = dict(architecture)
    base = arch.pop("base", None)
    if base is not None:
        arch = _merge(repo.entry(str(base)).spec.to_dict(), arch)
    return ModelSpec.from_dict(arch)


def build_net(cfg: TrainConfig, spec: ModelSpec, repo: ModelRepo) -> ImosNet:
    """Seeded initialisation; with ``init``, that entry's weights (adapters may be new)."""
    torch.manual_seed(cfg.seed)
    net = ImosNet(spec)
    if cfg.init is not None:
        source = repo.load_network(repo.entry(cfg.init))
        load_into(net, source.state_dict())
    return net


def load_into(net: ImosNet, state: Mapping[str, torch.Tensor]) -> None:
    """Load ``state`` into ``net``; only adapter weights may be missing (they start as identity)."""
    missing, unexpected = net.load_state_dict(dict(state), strict=False)
    bad = [k for k in missing if ".adapter." not in k]
    if bad or unexpected:
        raise ModelError(f"weights do not fit the architecture: missing {bad[:5]}, unexpected {unexpected[:5]}")


def make_evaluator(cfg: TrainConfig, root: Path | None, device: torch.device) -> DevEvaluator | None:
    if root is None or cfg.eval.every <= 0:
        return None
    size = cfg.eval.size or cfg.resolution
    return DevEvaluator(root, cfg.eval.sequences, size, cfg.eval.protocols, str(device), cfg.eval.memory)


def eval_root(req: TrainRequest) -> Path | None:
    if req.no_eval:
        return None
    if req.eval_root is not None:
        return req.eval_root
    return Path(req.config.eval.root) if req.config.eval.root else None


def train(req: TrainRequest) -> ModelEntry:
    """Run (or resume) training and write model_repo/NAME with provenance; returns the entry."""
    cfg = dataclasses.replace(req.config, device=req.device or req.config.device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = pick_device(cfg.device)
    repo = ModelRepo(req.repo_root)
    spec = resolve_spec(cfg.architecture, repo)
    root = eval_root(req)
    sources = DataSources(req.data, forbidden=[root] if root is not None else [], datasets=req.datasets)
    job = Job(cfg, build_net(cfg, spec, repo), req.out_dir, device, command=req.command)
    outcome = run(job, ClipSampler(cfg, sources), make_evaluator(cfg, root, device), req.resume,
                  req.stop_at, req.time_limit_s)
    size = cfg.inference_size or cfg.eval.size or cfg.resolution
    extra = {"trained_by": "imos train", "config_file": req.config_path, "config": cfg.to_dict(),
             "seed": cfg.seed, "init": cfg.init, "datasets": list(req.datasets) or "all",
             "planned_steps": cfg.total_iterations, "selected": _selected(cfg, outcome.best),
             "eval_root": str(root) if root else None}
    prov = provenance(outcome, req.data, req.command, str(device), extra, sources.describe())
    description = (f"Trained by imos train from {'scratch' if cfg.init is None else cfg.init} "
                   f"({outcome.steps} steps, {cfg.resolution} px crops).")
    return write_entry(req.repo_root, req.name or cfg.name, spec, outcome, description, size, prov,
                       memory=cfg.eval.memory)


def _selected(cfg: TrainConfig, best: dict[str, Any] | None) -> dict[str, Any]:
    if cfg.select == "best" and best is not None:
        return {"rule": "best dev-subset J&F", "step": best["step"], "score": best["score"]}
    return {"rule": "last step"}

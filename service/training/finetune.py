"""``imos finetune``: iMOS's parameter-efficient tuning of a repository model.

The base network is rebuilt with Conv-Parallel adapters switched on. New adapters start as the
identity (their 1x1 conv is zero), so step 0 reproduces the base model exactly. Encoders, key
projection and their BatchNorm statistics stay frozen; only the adapters (with their alpha) and
the decoder learn.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from service.engine.nn.network import ImosNet
from service.engine.nn.resnet import adapter_parameters
from service.engine.repo import ModelEntry, ModelRepo
from service.engine.spec import AdapterSpec, ModelSpec
from service.training.config import TrainConfig
from service.training.data import ClipSampler
from service.training.evaluate import DevEvaluator
from service.training.export import provenance, write_entry
from service.training.loop import Job, run
from service.training.sources import DataSources
from service.training.trainer import load_into, pick_device

FROZEN_MODULES = ("key_encoder", "key_proj", "value_encoder")


@dataclass(frozen=True)
class FinetuneRequest:
    """One ``imos finetune`` invocation; ``name`` is the new entry, ``work_dir`` holds logs and
    checkpoints; eval_root None with no_eval False falls back to the config's eval root."""

    base: str
    data: tuple[Path, ...]
    name: str
    repo_root: Path
    config: TrainConfig
    work_dir: Path
    resume: bool = False
    device: str | None = None
    eval_root: Path | None = None
    no_eval: bool = False
    datasets: tuple[str, ...] = ()
    command: str = ""
    config_path: str | None = None


def with_adapters(spec: ModelSpec) -> ModelSpec:
    return dataclasses.replace(spec, adapters=AdapterSpec(enabled=True, gamma=spec.adapters.gamma))


def prepare(base: ImosNet, seed: int) -> ImosNet:
    """The base weights in an adapter-enabled network; only adapters and decoder trainable."""
    torch.manual_seed(seed)
    net = ImosNet(with_adapters(base.spec))
    load_into(net, base.state_dict())
    for p in net.parameters():
        p.requires_grad_(False)
    for p in adapter_parameters(net) + list(net.decoder.parameters()):
        p.requires_grad_(True)
    return net


def trainable_names(net: ImosNet) -> list[str]:
    return [n for n, p in net.named_parameters() if p.requires_grad]


def finetune(req: FinetuneRequest) -> ModelEntry:
    """Tune, then write model_repo/NAME recording the base model, data, steps and dev scores."""
    cfg = dataclasses.replace(req.config, device=req.device or req.config.device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = pick_device(cfg.device)
    repo = ModelRepo(req.repo_root)
    base_entry = repo.entry(req.base)
    net = prepare(repo.load_network(base_entry), cfg.seed)
    size = cfg.inference_size or base_entry.memory.size
    root = None if req.no_eval else (req.eval_root or (Path(cfg.eval.root) if cfg.eval.root else None))
    # The tuned model keeps the base's memory settings (e.g. max_upscale) unless the config names others.
    memory = {k: v for k, v in dict(base_entry.meta.get("memory") or {}).items() if k != "size"}
    memory.update(cfg.eval.memory)
    evaluator = (DevEvaluator(root, cfg.eval.sequences, cfg.eval.size or size, cfg.eval.protocols, str(device),
                              memory) if root is not None and cfg.eval.every > 0 else None)
    sources = DataSources(req.data, forbidden=[root] if root is not None else [], datasets=req.datasets)
    base_score = evaluator(net, 0) if evaluator is not None and not req.resume else None
    job = Job(cfg, net, req.work_dir, device, frozen=FROZEN_MODULES, command=req.command)
    outcome = run(job, ClipSampler(cfg, sources), evaluator, req.resume)
    extra: dict[str, Any] = {
        "trained_by": "imos finetune", "base_model": {"name": base_entry.name, "version": base_entry.version},
        "trainable": "Conv-Parallel adapters (conv_dw, conv_pw, alpha) + decoder; encoders frozen",
        "trainable_parameters": sum(p.numel() for p in net.parameters() if p.requires_grad),
        "base_dev_subset": base_score, "config_file": req.config_path, "config": cfg.to_dict(), "seed": cfg.seed}
    prov = provenance(outcome, req.data, req.command, str(device), extra, sources.describe())
    description = (f"{base_entry.name}:{base_entry.version} fine-tuned with Conv-Parallel adapters "
                   f"({outcome.steps} steps).")
    return write_entry(req.repo_root, req.name, with_adapters(base_entry.spec), outcome, description, size, prov,
                       memory=memory)

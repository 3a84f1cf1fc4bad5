"""The optimisation loop shared by ``imos train`` and ``imos finetune``.

Determinism: the batch of step s is a function of (seed, s) (data.py) and the forward pass draws
from a generator seeded with (seed, s), so a run resumed from a checkpoint continues exactly as
the uninterrupted run would (same device and thread count).
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from service.engine.nn.network import ImosNet
from service.training import checkpoints
from service.training.checkpoints import Snapshot
from service.training.config import OptimConfig, TrainConfig
from service.training.data import ClipBatch, ClipSampler, batches
from service.training.forward import clip_forward
from service.training.logbook import Logbook
from service.training.losses import LossTerms, bootstrap_p, clip_loss

Evaluator = Callable[[ImosNet, int], dict[str, Any]]


@dataclass(frozen=True)
class Job:
    """What to train: ``net`` (its requires_grad flags say which parameters), the modules kept in
    eval mode (frozen BatchNorm statistics), where to write, on which device."""

    cfg: TrainConfig
    net: ImosNet
    out_dir: Path
    device: torch.device
    frozen: tuple[str, ...] = ()
    command: str = ""


@dataclass(frozen=True)
class Outcome:
    """steps: steps run in total; wall: training seconds (all sessions); evals: every dev eval;
    best: the best eval; losses: mean loss terms over the last log window; state: weights to export;
    sessions: each invocation that trained (command, first step), across resumes."""

    steps: int
    wall: float
    evals: tuple[dict[str, Any], ...]
    best: dict[str, Any] | None
    losses: dict[str, float]
    state: dict[str, torch.Tensor]
    sessions: tuple[dict[str, Any], ...] = ()


def lr_factor(step: int, total: int, opt: OptimConfig) -> float:
    """Linear warm-up over ``warmup * total`` steps, then cosine / step / constant."""
    warm = int(opt.warmup * total)
    if step < warm:
        return (step + 1) / warm
    if opt.schedule == "cosine":
        progress = (step - warm) / max(total - warm, 1)
        return opt.min_lr_ratio + (1 - opt.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
    if opt.schedule == "step":
        return opt.gamma ** sum(step >= int(m * total) for m in opt.milestones)
    return 1.0


def make_optimizer(net: ImosNet, opt: OptimConfig) -> torch.optim.AdamW:
    """AdamW over trainable parameters; no weight decay on 1-D ones (biases, BatchNorm, adapter alpha),
    which decay would pull towards zero and so switch off."""
    params = [(n, p) for n, p in net.named_parameters() if p.requires_grad]
    groups = [{"params": [p for _, p in params if p.ndim > 1], "weight_decay": opt.weight_decay},
              {"params": [p for _, p in params if p.ndim <= 1], "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=opt.lr)


def set_modes(job: Job) -> None:
    job.net.train()
    for name in job.frozen:
        job.net.get_submodule(name).eval()


def train_step(job: Job, opt: torch.optim.Optimizer, batch: ClipBatch, step: int) -> tuple[LossTerms, float]:
    """One optimisation step on ``batch``; returns the loss terms and the gradient norm."""
    cfg = job.cfg
    _, stage, within = cfg.stage_at(step)
    gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
    p = bootstrap_p(within, stage.iterations, cfg.loss.warm, cfg.loss.top_p)
    amp = cfg.amp and job.device.type == "cuda"
    with torch.autocast(job.device.type, dtype=torch.bfloat16, enabled=amp):
        out = clip_forward(job.net, batch.images, batch.first_masks(), batch.valid, gen, cfg.ref_frames,
                           cfg.deep_update_prob, cfg.train_top_k)
    terms = clip_loss(out.logits.float(), out.probs.float(), batch.labels[:, 1:], batch.valid, p,
                      cfg.loss.dice_weight)
    opt.zero_grad(set_to_none=True)
    terms.total.backward()
    trainable = [q for q in job.net.parameters() if q.requires_grad]
    norm = torch.nn.utils.clip_grad_norm_(trainable, cfg.optim.grad_clip if cfg.optim.grad_clip > 0 else math.inf)
    if math.isfinite(float(norm)):  # a non-finite loss or gradient skips the update (logged as nan/inf)
        opt.step()
    return terms, float(norm)


def start_state(job: Job, opt: torch.optim.Optimizer, resume: bool, log: Logbook) -> Snapshot:
    """The latest checkpoint when resuming (weights and optimiser restored), else a fresh start."""
    snap = checkpoints.load_latest(job.out_dir / "checkpoints") if resume else None
    if snap is None:
        if resume:
            log.note("no checkpoint to resume from; starting at step 0")
        return Snapshot(0, {}, {}, checkpoints.capture_rng(), job.cfg.to_dict())
    job.net.load_state_dict(snap.model)
    opt.load_state_dict(snap.optimizer)
    checkpoints.restore_rng(snap.rng)
    if snap.config != job.cfg.to_dict():
        log.note("the configuration differs from the checkpoint's; continuing with the new one")
    log.note(f"resumed from step {snap.step}")
    return snap


def run(job: Job, sampler: ClipSampler, evaluator: Evaluator | None, resume: bool,
        stop_at: int | None = None, time_limit_s: float | None = None) -> Outcome:
    """Train from step 0 or the latest checkpoint to cfg.total_iterations, or stop early at step
    ``stop_at``, or at the first step that ends ``time_limit_s`` seconds after the start (the
    learning-rate schedule stays the full run's; the last step is evaluated and checkpointed, so a
    later resume without them continues exactly)."""
    deadline = None if time_limit_s is None else time.monotonic() + time_limit_s
    cfg = job.cfg
    job.out_dir.mkdir(parents=True, exist_ok=True)
    log = Logbook(job.out_dir / "log.jsonl", cfg.log_every)
    job.net.to(job.device)
    opt = make_optimizer(job.net, cfg.optim)
    snap = start_state(job, opt, resume, log)
    history, best, wall = list(snap.history), snap.best, snap.wall
    sessions = [*snap.extra.get("sessions", []), {"command": job.command, "from_step": snap.step,
                                                  "started": round(time.time(), 1)}]
    total = cfg.total_iterations
    end = total if stop_at is None else max(0, min(total, stop_at))
    clock = time.perf_counter()
    for step, batch in zip(range(snap.step, end), batches(sampler, snap.step, end, cfg.workers)):
        _set_lr(opt, cfg.optim.lr * lr_factor(step, total, cfg.optim))
        batch = batch.to(job.device)
        set_modes(job)
        terms, norm = train_step(job, opt, batch, step)
        # seconds per step include making the batch; evaluation and checkpoints only count in wall
        log.step(step, cfg.stage_at(step)[1].name, terms, norm, opt.param_groups[0]["lr"], batch,
                 time.perf_counter() - clock)
        done = step + 1
        if deadline is not None and done < end and time.monotonic() >= deadline:
            log.note(f"time limit of {time_limit_s:.0f} s reached at step {done} of {end}")
            end = done
        if done == end:  # saved before the last evaluation too, which a hard stop on a budget may cut short
            _checkpoint(job, opt, done, (history, best, sessions), wall + time.perf_counter() - clock)
        if evaluator is not None and cfg.eval.every > 0 and (done % cfg.eval.every == 0 or done == end):
            best = _evaluate(job, evaluator, done, history, best, log)
        if done % cfg.checkpoint_every == 0 or done == end:
            _checkpoint(job, opt, done, (history, best, sessions), wall + time.perf_counter() - clock)
        wall += time.perf_counter() - clock
        clock = time.perf_counter()
        if done == end:
            break
    return _outcome(job, history, best, wall, log, sessions, max(end, snap.step))


def _set_lr(opt: torch.optim.Optimizer, lr: float) -> None:
    for group in opt.param_groups:
        group["lr"] = lr


def _evaluate(job: Job, evaluator: Evaluator, step: int, history: list[dict[str, Any]],
              best: dict[str, Any] | None, log: Logbook) -> dict[str, Any] | None:
    result = evaluator(job.net, step)
    history.append(result)
    log.eval(result)
    if best is None or result["score"] > best["score"]:
        best = result
        save_file({k: v.detach().cpu().contiguous() for k, v in job.net.state_dict().items()},
                  str(job.out_dir / "best.safetensors"))
    return best


def _checkpoint(job: Job, opt: torch.optim.Optimizer, step: int,
                record: tuple[Iterable[dict[str, Any]], dict[str, Any] | None, list[dict[str, Any]]],
                wall: float) -> None:
    """record: (eval history, best eval, sessions)."""
    history, best, sessions = record
    snap = Snapshot(step, {k: v.detach().cpu() for k, v in job.net.state_dict().items()}, opt.state_dict(),
                    checkpoints.capture_rng(), job.cfg.to_dict(), tuple(history), best, wall,
                    {"sessions": sessions})
    checkpoints.save(job.out_dir / "checkpoints", snap, job.cfg.keep_checkpoints)


def _outcome(job: Job, history: list[dict[str, Any]], best: dict[str, Any] | None, wall: float,
             log: Logbook, sessions: list[dict[str, Any]], steps: int) -> Outcome:
    state = {k: v.detach().cpu() for k, v in job.net.state_dict().items()}
    best_file = job.out_dir / "best.safetensors"
    if job.cfg.select == "best" and best is not None and best_file.is_file():
        state = load_file(str(best_file))
    if not log.recent():
        print("imos train: nothing to do, the run is already complete", file=sys.stderr)
    return Outcome(steps, wall, tuple(history), best, log.recent(), state, tuple(sessions))

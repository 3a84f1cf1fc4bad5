"""The training configuration: one frozen TrainConfig read from YAML.

Iteration-relative settings (LR warm-up, bootstrapping warm-up, clip-length and frame-gap
schedules) are fractions of a stage or of the run, so ``--steps N`` rescales a recipe without
editing it. Unknown keys are errors: a typo must not silently train with a default.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from service.engine.spec import MemoryConfig
from service.errors import InvalidInput

SOURCES = ("static", "real", "synthetic", "tissue")


@dataclass(frozen=True)
class Schedule:
    """Piecewise-constant integer over a stage's progress: ((start fraction, value), ...)."""

    points: tuple[tuple[float, int], ...] = ((0.0, 3),)

    def __post_init__(self) -> None:
        if not self.points or self.points[0][0] != 0.0:
            raise InvalidInput("a schedule must start at fraction 0")
        if any(b[0] <= a[0] for a, b in zip(self.points, self.points[1:])):
            raise InvalidInput("schedule fractions must increase")

    def at(self, progress: float) -> int:
        value = self.points[0][1]
        for start, v in self.points:
            if progress >= start:
                value = v
        return value


@dataclass(frozen=True)
class StageConfig:
    """One stage: how many iterations, which sources in which proportion, clip length and max gap."""

    name: str
    iterations: int
    mix: tuple[tuple[str, float], ...]
    clip_length: Schedule = Schedule(((0.0, 3),))
    max_gap: Schedule = Schedule(((0.0, 1),))

    def __post_init__(self) -> None:
        if self.iterations < 0:
            raise InvalidInput(f"stage {self.name}: iterations must be >= 0")
        unknown = [s for s, _ in self.mix if s not in SOURCES]
        if unknown or not self.mix or sum(w for _, w in self.mix) <= 0:
            raise InvalidInput(f"stage {self.name}: mix wants positive weights over {', '.join(SOURCES)}")
        if min(v for _, v in self.clip_length.points) < 2:
            raise InvalidInput(f"stage {self.name}: clips need at least 2 frames")


@dataclass(frozen=True)
class OptimConfig:
    """AdamW; warmup and milestones are fractions of the whole run."""

    lr: float = 2e-4
    weight_decay: float = 0.05
    schedule: str = "cosine"  # cosine | step | constant
    warmup: float = 0.03
    min_lr_ratio: float = 0.05
    milestones: tuple[float, ...] = ()
    gamma: float = 0.1
    grad_clip: float = 1.0

    def __post_init__(self) -> None:
        if self.schedule not in ("cosine", "step", "constant"):
            raise InvalidInput("optim.schedule must be cosine, step or constant")


@dataclass(frozen=True)
class LossConfig:
    """Bootstrapped CE keeps the hardest ``top_p`` pixels once warmed up; ``warm`` = (start, end)
    fractions of each stage over which top-p falls from 1.0 to top_p (XMem: 20k..70k of 150k)."""

    dice_weight: float = 1.0
    top_p: float = 0.15
    warm: tuple[float, float] = (0.15, 0.5)


@dataclass(frozen=True)
class AugmentConfig:
    """Geometric and photometric augmentation; lengths are fractions of the crop size."""

    static_zoom: tuple[float, float] = (1.0, 1.6)
    sequence_zoom: tuple[float, float] = (1.0, 1.3)
    rotate: float = 15.0
    shear: float = 8.0
    translate: float = 0.06
    frame_scale: float = 0.1
    elastic_alpha: float = 0.03
    elastic_sigma: float = 0.08
    sequence_jitter: float = 0.015
    intensity: float = 0.15
    noise: float = 0.03
    flip: float = 0.5
    reverse: float = 0.5
    min_pixels: int = 12


@dataclass(frozen=True)
class EvalConfig:
    """Periodic dev-subset evaluation (model selection only, never training data)."""

    root: str | None = None
    sequences: str | None = None
    size: int | None = None
    protocols: tuple[str, ...] = ("best",)
    every: int = 0
    # Memory settings (XMem names) besides size, e.g. {max_upscale: 4}; they are also written to the
    # trained entry, so selection scores the model exactly as it will be served.
    memory: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if "size" in self.memory:
            raise InvalidInput("eval.memory: set the size with eval.size")
        MemoryConfig().with_overrides(self.memory)  # unknown names are errors here, not mid-run


@dataclass(frozen=True)
class TrainConfig:
    """Everything ``imos train`` needs besides the data roots (see configs/*.yaml)."""

    name: str
    stages: tuple[StageConfig, ...]
    architecture: Mapping[str, Any] = field(default_factory=lambda: {"base": "imos-lite"})
    init: str | None = None
    seed: int = 0
    device: str = "cpu"
    threads: int | None = None
    amp: bool = False
    resolution: int = 128
    batch_size: int = 4
    workers: int = 0
    num_objects: int = 3
    ref_frames: int = 3
    deep_update_prob: float = 0.2
    train_top_k: int | None = None
    inference_size: int | None = None
    optim: OptimConfig = OptimConfig()
    loss: LossConfig = LossConfig()
    augment: AugmentConfig = AugmentConfig()
    eval: EvalConfig = EvalConfig()
    checkpoint_every: int = 250
    keep_checkpoints: int = 2
    log_every: int = 10
    select: str = "last"  # last | best (by dev-subset J&F)

    def __post_init__(self) -> None:
        if self.resolution % 16 or self.resolution < 32:
            raise InvalidInput("resolution must be a multiple of 16, at least 32")
        if not 1 <= self.num_objects <= 16 or self.batch_size < 1 or self.ref_frames < 1:
            raise InvalidInput("num_objects must be 1..16; batch_size and ref_frames >= 1")
        if self.select not in ("last", "best"):
            raise InvalidInput("select must be last or best")
        if self.total_iterations < 1:
            raise InvalidInput("the stages have no iterations")

    @property
    def total_iterations(self) -> int:
        return sum(s.iterations for s in self.stages)

    def stage_at(self, step: int) -> tuple[int, StageConfig, int]:
        """(stage index, stage, step within the stage) of a global step (0-based)."""
        offset = 0
        for i, stage in enumerate(self.stages):
            if step < offset + stage.iterations:
                return i, stage, step - offset
            offset += stage.iterations
        last = len(self.stages) - 1
        return last, self.stages[last], self.stages[last].iterations - 1

    def with_steps(self, total: int) -> TrainConfig:
        """The same recipe over ``total`` iterations (stages scaled in proportion)."""
        scale = total / self.total_iterations
        counts = [int(s.iterations * scale) for s in self.stages]
        counts[-1] += total - sum(counts)
        stages = tuple(dataclasses.replace(s, iterations=n) for s, n in zip(self.stages, counts) if n > 0)
        return dataclasses.replace(self, stages=stages)

    def to_dict(self) -> dict[str, Any]:
        """The YAML form (config_from_dict(c.to_dict()) == c)."""
        out = _plain(dataclasses.asdict(self))
        out["architecture"] = _plain(dict(self.architecture))
        out["stages"] = [{"name": s.name, "iterations": s.iterations, "mix": dict(s.mix),
                          "clip_length": _plain(s.clip_length.points), "max_gap": _plain(s.max_gap.points)}
                         for s in self.stages]
        return out


def load_config(path: Path) -> TrainConfig:
    try:
        raw = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise InvalidInput(f"cannot read training config {path}: {exc}") from None
    if not isinstance(raw, dict):
        raise InvalidInput(f"{path} does not hold a mapping")
    return config_from_dict(raw)


def config_from_dict(raw: Mapping[str, Any]) -> TrainConfig:
    data = dict(raw)
    _only(data, TrainConfig, "config")
    data["stages"] = tuple(_stage(s) for s in data.get("stages", ()))
    for key, kind in (("optim", OptimConfig), ("loss", LossConfig), ("augment", AugmentConfig),
                      ("eval", EvalConfig)):
        if key in data:
            data[key] = _build(kind, data[key] or {}, key)
    return TrainConfig(**data)


def _stage(raw: Mapping[str, Any]) -> StageConfig:
    data = dict(raw)
    _only(data, StageConfig, "stage")
    data["mix"] = tuple((str(k), float(v)) for k, v in dict(data.get("mix", {})).items())
    for key in ("clip_length", "max_gap"):
        if key in data:
            data[key] = Schedule(tuple((float(a), int(b)) for a, b in data[key]))
    return StageConfig(**data)


def _build(kind: type, raw: Mapping[str, Any], label: str) -> Any:
    data = dict(raw)
    _only(data, kind, label)
    for f in dataclasses.fields(kind):
        if f.name in data and isinstance(data[f.name], list):
            data[f.name] = tuple(data[f.name])
    return kind(**data)


def _only(data: Mapping[str, Any], kind: type, label: str) -> None:
    known = {f.name for f in dataclasses.fields(kind)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise InvalidInput(f"unknown {label} key(s): {', '.join(unknown)} (known: {', '.join(sorted(known))})")


def _plain(value: Any) -> Any:
    """Tuples -> lists, for YAML and JSON."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value

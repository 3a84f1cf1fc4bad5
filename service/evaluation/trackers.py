"""What produces the predictions: a model from the repository, or a baseline (empty, copy, flow).

Every tracker runs a protocol's PassPlans and yields (direction, frame index, index mask [H, W]) with
the ground truth's object ids for each step of each plan: the baselines one plan after the other,
a model's passes together through the engine's pass scheduler.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from service.engine.direction import BOTH
from service.evaluation.passes import PassPlan, compose, with_given

BASELINES = ("empty", "copy", "flow")


class Tracker(Protocol):
    """name: shown in the table and JSON; needs_frames: False lets the runner skip decoding images."""

    name: str
    needs_frames: bool

    def run_plans(self, frames: Sequence[np.ndarray] | None,
                  plans: Sequence[PassPlan]) -> Iterator[tuple[str, int, np.ndarray]]:
        """(direction, frame index, index mask) for every step of every plan."""
        ...


class PassByPass:
    """Trackers whose passes are independent: run_plans is each plan's run_pass in turn."""

    def run_pass(self, frames: Sequence[np.ndarray] | None, plan: PassPlan) -> Iterator[tuple[int, np.ndarray]]:
        raise NotImplementedError

    def run_plans(self, frames: Sequence[np.ndarray] | None,
                  plans: Sequence[PassPlan]) -> Iterator[tuple[str, int, np.ndarray]]:
        for plan in plans:
            for t, mask in self.run_pass(frames, plan):
                yield plan.direction, t, mask


class EmptyTracker(PassByPass):
    """Predicts nothing anywhere: the floor every method should beat."""

    name = "empty"
    needs_frames = False

    def run_pass(self, frames: Sequence[np.ndarray] | None, plan: PassPlan) -> Iterator[tuple[int, np.ndarray]]:
        shape = next(iter(plan.prompts.values())).shape
        for t in plan.order:
            yield t, np.zeros(shape, np.uint8)


class CopyTracker(PassByPass):
    """Each given object's mask copied unchanged to every later frame of the pass."""

    name = "copy"
    needs_frames = False

    def run_pass(self, frames: Sequence[np.ndarray] | None, plan: PassPlan) -> Iterator[tuple[int, np.ndarray]]:
        shape = next(iter(plan.prompts.values())).shape
        masks: dict[int, np.ndarray] = {}
        for t in plan.order:
            if t in plan.prompts:
                masks = with_given(masks, plan.prompts[t])
            yield t, compose(masks, shape)


class PropagatorTracker:
    """Any Propagator: the plans of a protocol step together through its pass scheduler
    (Propagator.run_passes), later prompts fed as corrections.

    Subclasses set ``self.propagator`` and ``self.name``.
    """

    needs_frames = True
    propagator: Any
    name: str

    def run_plans(self, frames: Sequence[np.ndarray] | None,
                  plans: Sequence[PassPlan]) -> Iterator[tuple[str, int, np.ndarray]]:
        assert frames is not None
        if not plans:
            return
        direction = BOTH if len(plans) == 2 else plans[0].direction
        for stepped, res in self.propagator.run_passes(frames, plans[0].prompts, direction):
            yield stepped, res.index, res.labels()


class ModelTracker(PropagatorTracker):
    """A repository model (loaded by name)."""

    def __init__(self, repo_root: Path, name: str, backend: str = "torch", device: str = "cpu",
                 overrides: Mapping[str, str | int | bool] | None = None, precision: str = "fp32") -> None:
        from service.engine.loader import load_engine  # torch is heavy: only when a model is asked for

        self.engine = load_engine(repo_root, name, backend, device, precision=precision)
        self.propagator = self.engine.propagator(overrides)
        self.name = self.engine.model_id


def make_tracker(name: str, repo_root: Path, backend: str = "torch", device: str = "cpu",
                 overrides: Mapping[str, str | int | bool] | None = None, precision: str = "fp32") -> Tracker:
    """A baseline when ``name`` is one of BASELINES, else the named repository model."""
    if name == "empty":
        return EmptyTracker()
    if name == "copy":
        return CopyTracker()
    if name == "flow":
        from service.evaluation.flow import FlowTracker

        return FlowTracker()
    return ModelTracker(repo_root, name, backend, device, overrides, precision)

"""Per-sequence adapted weights (issue 19, lever 4) as the engine uses them.

A pass that starts with ``adapt_steps`` > 0 tunes a copy of the model's Conv-Parallel adapters and
decoder on views of its annotated frame (service.training.adapt) and then runs on those weights.
The weights are kept here under a key that names their input (model, frame, mask, scale, recipe),
so the two passes of a run share one adaptation; the pass's state carries only the key
(PassState.weights), and the tuned tensors travel as one blob (``export`` / ``load``: fp16, the
rounding applied at once so that a pass resumed from the blob computes exactly what the pass that
made it computed). Adapted passes run on the torch backend of the worker's device, outside any
batcher: their weights are theirs alone.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors

from service.engine.backends.base import Stages
from service.engine.nn.network import ImosNet
from service.errors import InvalidInput, StateError

log = logging.getLogger("imos.engine")

KEEP = 8  # adapted weight sets held in memory (LRU); each is a few MB for imos-lite


@dataclass(frozen=True)
class Recipe:
    """How to adapt: AdamW steps, a wall-clock budget (0 = none), whether the decoder learns too, and
    the views' side in pixels."""

    steps: int
    budget_s: float = 0.0
    decoder: bool = False
    crop: int = 160


class Adapter:
    """Makes, keeps and serves per-sequence adapted weights for one base model (thread-safe)."""

    def __init__(self, model: str, base: Callable[[], ImosNet], device: torch.device,
                 stages_for: Callable[[ImosNet], Stages]) -> None:
        self.model, self.device = model, device
        self._base_loader, self._stages_for = base, stages_for
        self._base: ImosNet | None = None
        self._held: OrderedDict[str, tuple[ImosNet, Stages]] = OrderedDict()
        self._lock = threading.Lock()

    def key(self, frame: np.ndarray, labels: np.ndarray, scale: float, recipe: Recipe) -> str:
        """What names an adaptation: the model, the frame and mask bytes, the scale and the recipe."""
        h = hashlib.sha256(f"{self.model}|{scale:.6f}|{recipe}|{frame.shape}|{labels.dtype}".encode())
        h.update(np.ascontiguousarray(frame).tobytes())
        h.update(np.ascontiguousarray(labels).tobytes())
        return h.hexdigest()[:32]

    def adapt(self, frame: np.ndarray, labels: np.ndarray, scale: float, recipe: Recipe) -> str:
        """frame uint8 [H, W, 3], labels [H, W] (0 = background), scale: working pixels per frame
        pixel -> the key of the adapted weights (made now unless held already)."""
        from service.training.adapt import AdaptConfig, Prompt, adapt

        key = self.key(frame, labels, scale, recipe)
        if self.has(key):
            return key
        if recipe.steps <= 0:
            raise InvalidInput("adapt_steps must be > 0 to adapt")
        started = time.perf_counter()
        net, report = adapt(self.base(), [Prompt(frame, labels, scale)],
                            AdaptConfig(steps=recipe.steps, budget_s=recipe.budget_s, crop=recipe.crop,
                                        decoder=recipe.decoder))
        self._hold(key, _rounded(net))
        log.info("sequence adaptation", extra={
            "steps": report.steps, "seconds": round(time.perf_counter() - started, 2),
            "loss_first": round(report.first_loss, 4), "loss_last": round(report.last_loss, 4)})
        return key

    def has(self, key: str) -> bool:
        with self._lock:
            return key in self._held

    def stages(self, key: str) -> Stages:
        with self._lock:
            held = self._held.get(key)
            if held is None:
                raise StateError(f"adapted weights {key} are not loaded here")
            self._held.move_to_end(key)
            return held[1]

    def export(self, key: str) -> bytes:
        """The adapted tensors (adapters + decoder) as safetensors bytes, fp16."""
        from service.training.adapt import adapter_state

        with self._lock:
            net = self._held[key][0]
        return save_tensors({k: v.half().contiguous() for k, v in adapter_state(net).items()},
                            metadata={"model": self.model, "key": key})

    def load(self, key: str, blob: bytes) -> None:
        """Hold the weights of ``export`` (another worker adapted them)."""
        if self.has(key):
            return
        try:
            tensors = load_tensors(blob)
        except Exception as exc:  # a damaged blob is a state problem, not a crash
            raise StateError(f"adapted weights {key} are unreadable") from exc
        from service.training.finetune import prepare

        net = prepare(self.base(), 0)
        missing = set(tensors) - set(net.state_dict())
        if missing:
            raise StateError(f"adapted weights {key} do not fit {self.model}")
        net.load_state_dict({k: v.float() for k, v in tensors.items()}, strict=False)
        self._hold(key, net)

    def base(self) -> ImosNet:
        with self._lock:
            if self._base is None:
                self._base = self._base_loader().to(self.device).eval()
            return self._base

    def _hold(self, key: str, net: ImosNet) -> None:
        for p in net.parameters():
            p.requires_grad_(False)
        net = net.to(self.device).eval()
        stages = self._stages_for(net)
        with self._lock:
            self._held[key] = (net, stages)
            while len(self._held) > KEEP:
                self._held.popitem(last=False)


def _rounded(net: ImosNet) -> ImosNet:
    """The adapted tensors rounded through fp16, as ``export`` stores them (see the module doc)."""
    from service.training.adapt import adapter_state

    with torch.no_grad():
        for name, value in adapter_state(net).items():
            net.get_parameter(name).copy_(value.half().float())
    return net

"""Torch backend: runs the stages of an ImosNet on CPU or CUDA."""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch

from service.engine.backends.base import KeyFeatures
from service.engine.nn.network import ImosNet
from service.errors import BackendUnavailable

_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


class TorchStages:
    """Stages on a torch module; ``precision`` fp32, fp16 (CUDA) or bf16 via autocast."""

    name = "torch"

    def __init__(self, net: ImosNet, device: str = "cpu", precision: str = "fp32") -> None:
        if precision not in _DTYPES:
            raise BackendUnavailable(f"unknown precision {precision!r}; use fp32, fp16 or bf16")
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise BackendUnavailable("device cuda requested but torch sees no CUDA GPU here")
        if precision == "fp16" and not device.startswith("cuda"):
            raise BackendUnavailable("fp16 needs a CUDA device; use bf16 on CPU")
        self.device = torch.device(device)
        self.precision = precision
        self.net = net.to(self.device).eval()
        self.hidden_dim = net.spec.hidden_dim

    @contextlib.contextmanager
    def _mode(self) -> Iterator[None]:
        with torch.inference_mode():
            if self.precision == "fp32":
                yield
            else:
                with torch.autocast(self.device.type, dtype=_DTYPES[self.precision]):
                    yield

    def encode_key(self, image: torch.Tensor) -> KeyFeatures:
        with self._mode():
            out = self.net.encode_key(image)
        return KeyFeatures(*(t.float() for t in out))

    def encode_value(self, image: torch.Tensor, f16: torch.Tensor, hidden: torch.Tensor,
                     masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with self._mode():
            value, new_hidden = self.net.encode_value(image, f16, hidden, masks)
        return value.float(), new_hidden.float()

    def segment(self, feats: KeyFeatures, readout: torch.Tensor,
                hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with self._mode():
            logits, new_hidden = self.net.segment(feats.f16, feats.f8, feats.f4, readout, hidden)
        return logits.float(), new_hidden.float()

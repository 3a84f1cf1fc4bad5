"""The stage interface every backend (torch, onnxruntime, tensorrt) implements."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch


@dataclass(frozen=True)
class KeyFeatures:
    """Output of encode_key for a batch of B frames (h, w = H/16, W/16).

    key [B, Ck, h, w]; shrinkage [B, 1, h, w]; selection [B, Ck, h, w];
    f16 [B, C16, h, w]; f8 [B, C8, 2h, 2w]; f4 [B, C4, 4h, 4w].
    """

    key: torch.Tensor
    shrinkage: torch.Tensor
    selection: torch.Tensor
    f16: torch.Tensor
    f8: torch.Tensor
    f4: torch.Tensor

    def item(self, i: int) -> KeyFeatures:
        """The i-th frame of the batch, keeping a batch dimension of 1."""
        return KeyFeatures(*(t[i:i + 1] for t in (self.key, self.shrinkage, self.selection,
                                                  self.f16, self.f8, self.f4)))


class Stages(Protocol):
    """Three stateless network stages. Tensors in and out are float32 torch tensors
    on ``device``; a backend may compute in lower precision internally."""

    name: str
    device: torch.device
    hidden_dim: int

    def encode_key(self, image: torch.Tensor) -> KeyFeatures:
        """image [B, 3, H, W], normalised, H and W multiples of 16."""
        ...

    def encode_value(self, image: torch.Tensor, f16: torch.Tensor, hidden: torch.Tensor,
                     masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """image [B, 3, H, W], f16 [B, C16, h, w], hidden [B, K, Ch, h, w], masks [B, K, H, W]
        -> value [B, K, Cv, h, w], deep-updated hidden [B, K, Ch, h, w]."""
        ...

    def segment(self, feats: KeyFeatures, readout: torch.Tensor,
                hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """readout [B, K, Cv, h, w], hidden [B, K, Ch, h, w] -> logits [B, K, H, W], hidden'."""
        ...

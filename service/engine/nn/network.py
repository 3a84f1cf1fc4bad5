"""The iMOS network as three stateless stages (XMem's state_dict layout)."""

from __future__ import annotations

import torch
from torch import nn

from service.engine.nn.decoder import Decoder
from service.engine.nn.encoders import KeyEncoder, KeyProjection, ValueEncoder
from service.engine.spec import ModelSpec


class ImosNet(nn.Module):
    """XMem with optional Conv-Parallel adapters. Holds weights, never per-video state."""

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        self.spec = spec
        self.key_encoder = KeyEncoder(spec.key_backbone, spec.adapters)
        self.key_proj = KeyProjection(spec.key_backbone.out_dims[0], spec.key_dim)
        self.value_encoder = ValueEncoder(spec)
        self.decoder = Decoder(spec)

    def encode_key(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """image [B, 3, H, W] (normalised, H and W multiples of 16) ->
        key [B, Ck, H/16, W/16], shrinkage [B, 1, ...], selection [B, Ck, ...],
        f16 [B, C16, H/16, W/16], f8 [B, C8, H/8, W/8], f4 [B, C4, H/4, W/4]."""
        f16, f8, f4 = self.key_encoder(image)
        key, shrinkage, selection = self.key_proj(f16)
        return key, shrinkage, selection, f16, f8, f4

    def encode_value(self, image: torch.Tensor, f16: torch.Tensor, hidden: torch.Tensor,
                     masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """image [B, 3, H, W], f16 [B, C16, h, w], hidden [B, K, Ch, h, w], masks [B, K, H, W]
        -> value [B, K, Cv, h, w], deep-updated hidden [B, K, Ch, h, w]."""
        out: tuple[torch.Tensor, torch.Tensor] = self.value_encoder(image, f16, hidden, masks)
        return out

    def segment(self, f16: torch.Tensor, f8: torch.Tensor, f4: torch.Tensor, readout: torch.Tensor,
                hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """readout [B, K, Cv, h, w], hidden [B, K, Ch, h, w] -> logits [B, K, H, W], hidden'."""
        out: tuple[torch.Tensor, torch.Tensor] = self.decoder(f16, f8, f4, readout, hidden)
        return out


class KeyStage(nn.Module):
    """encode_key as its own module, for export."""

    def __init__(self, net: ImosNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.net.encode_key(image)


class ValueStage(nn.Module):
    """encode_value as its own module, for export."""

    def __init__(self, net: ImosNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, image: torch.Tensor, f16: torch.Tensor, hidden: torch.Tensor,
                masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.net.encode_value(image, f16, hidden, masks)


class SegmentStage(nn.Module):
    """segment as its own module, for export."""

    def __init__(self, net: ImosNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, f16: torch.Tensor, f8: torch.Tensor, f4: torch.Tensor, readout: torch.Tensor,
                hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.net.segment(f16, f8, f4, readout, hidden)

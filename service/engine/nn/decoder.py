"""Decoder with sensory-memory update (XMem layout, sizes from ModelSpec)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from service.engine.nn.blocks import (
    FeatureFusionBlock,
    GConv2d,
    GroupResBlock,
    downsample_area,
    flat,
    gru_update,
    unflat,
    upsample2,
)
from service.engine.spec import ModelSpec


class HiddenUpdater(nn.Module):
    """Multi-scale decoder features + logits -> updated hidden [B, K, Ch, h, w]."""

    def __init__(self, g_dims: tuple[int, int, int], mid_dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.g16_conv = GConv2d(g_dims[0], mid_dim, 1)
        self.g8_conv = GConv2d(g_dims[1], mid_dim, 1)
        self.g4_conv = GConv2d(g_dims[2], mid_dim, 1)
        self.transform = GConv2d(mid_dim + hidden_dim, hidden_dim * 3, 3, padding=1)

    def forward(self, g16: torch.Tensor, g8: torch.Tensor, g4: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        g = (self.g16_conv(g16) + self.g8_conv(downsample_area(g8, 2))
             + self.g4_conv(downsample_area(g4, 4)))
        return gru_update(self.transform(torch.cat([g, h], 2)), h)


class UpsampleBlock(nn.Module):
    """Skip features [B, Cs, 2h, 2w] + group features [B, K, Cg, h, w] -> [B, K, Co, 2h, 2w]."""

    def __init__(self, skip_dim: int, up_dim: int, out_dim: int) -> None:
        super().__init__()
        self.skip_conv = nn.Conv2d(skip_dim, up_dim, 3, padding=1)
        self.out_conv = GroupResBlock(up_dim, out_dim)

    def forward(self, skip: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        g = upsample2(g) + self.skip_conv(skip).unsqueeze(1)
        out: torch.Tensor = self.out_conv(g)
        return out


class Decoder(nn.Module):
    """(f16, f8, f4, readout, hidden) -> (logits [B, K, H, W] at full padded size, new hidden)."""

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        f16, f8, f4 = spec.key_backbone.out_dims
        d16, d8, d4 = spec.decoder_dims
        self.fuser = FeatureFusionBlock(f16, spec.value_dim + spec.hidden_dim, d16, d16)
        self.hidden_update = HiddenUpdater((d16, d8, d4 + 1), spec.hidden_mid_dim, spec.hidden_dim)
        self.up_16_8 = UpsampleBlock(f8, d16, d8)
        self.up_8_4 = UpsampleBlock(f4, d8, d4)
        self.pred = nn.Conv2d(d4, 1, 3, padding=1)

    def forward(self, f16: torch.Tensor, f8: torch.Tensor, f4: torch.Tensor, readout: torch.Tensor,
                hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        batch = readout.shape[0]
        g16 = self.fuser(f16, torch.cat([readout, hidden], 2))
        g8 = self.up_16_8(f8, g16)
        g4 = self.up_8_4(f4, g8)
        logits = self.pred(F.relu(flat(g4)))
        new_hidden = self.hidden_update(g16, g8, torch.cat([g4, unflat(logits, batch)], 2), hidden)
        logits = F.interpolate(logits, scale_factor=4.0, mode="bilinear", align_corners=False)
        return unflat(logits, batch)[:, :, 0], new_hidden

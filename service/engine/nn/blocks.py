"""Building blocks that act on per-object ("group") tensors [B, K, C, H, W]."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def flat(g: torch.Tensor) -> torch.Tensor:
    """[B, K, C, H, W] -> [B*K, C, H, W]."""
    return g.flatten(0, 1)


def unflat(x: torch.Tensor, batch: int) -> torch.Tensor:
    """[B*K, C, H, W] -> [B, K, C, H, W]."""
    return x.view(batch, -1, *x.shape[1:])


def broadcast_cat(x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Prepend image features x [B, C1, H, W] to every object of g [B, K, C2, H, W]."""
    k = g.shape[1]
    return torch.cat([x.unsqueeze(1).expand(-1, k, -1, -1, -1), g], 2)


def downsample_area(g: torch.Tensor, factor: int) -> torch.Tensor:
    """Area downsampling of [B, K, C, H, W] by an integer factor (H, W divisible by it).

    Average pooling with kernel = stride = factor equals area interpolation here,
    and keeps exported graphs free of size-dependent constants.
    """
    return unflat(F.avg_pool2d(flat(g), factor), g.shape[0])


def upsample2(g: torch.Tensor) -> torch.Tensor:
    """Bilinear x2 upsampling of [B, K, C, H, W] (align_corners=False)."""
    return unflat(F.interpolate(flat(g), scale_factor=2.0, mode="bilinear", align_corners=False), g.shape[0])


class GConv2d(nn.Conv2d):
    """A Conv2d applied to every object of [B, K, C, H, W]."""

    def forward(self, g: torch.Tensor) -> torch.Tensor:
        return unflat(super().forward(flat(g)), g.shape[0])


class GroupResBlock(nn.Module):
    """Pre-activation residual block on [B, K, C_in, H, W] -> [B, K, C_out, H, W]."""

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.downsample = GConv2d(in_dim, out_dim, 3, padding=1) if in_dim != out_dim else None
        self.conv1 = GConv2d(in_dim, out_dim, 3, padding=1)
        self.conv2 = GConv2d(out_dim, out_dim, 3, padding=1)

    def forward(self, g: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.conv2(F.relu(self.conv1(F.relu(g))))
        skip = g if self.downsample is None else self.downsample(g)
        return out + skip


class _BasicConv(nn.Module):
    def __init__(self, in_dim: int, out_dim: int, kernel: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_dim, out_dim, kernel, padding=(kernel - 1) // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y: torch.Tensor = self.conv(x)
        return y


class ChannelGate(nn.Module):
    """CBAM channel attention with global (size-independent) avg and max pooling."""

    def __init__(self, dim: int, reduction: int = 16) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Flatten(), nn.Linear(dim, dim // reduction), nn.ReLU(),
                                 nn.Linear(dim // reduction, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        avg = self.mlp(x.mean(dim=(2, 3), keepdim=True))
        mx = self.mlp(x.amax(dim=(2, 3), keepdim=True))
        return x * torch.sigmoid(avg + mx)[:, :, None, None]


class SpatialGate(nn.Module):
    """CBAM spatial attention: 7x7 conv over [max, mean] across channels."""

    def __init__(self) -> None:
        super().__init__()
        self.spatial = _BasicConv(2, 1, 7)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = torch.cat([x.amax(1, keepdim=True), x.mean(1, keepdim=True)], 1)
        return x * torch.sigmoid(self.spatial(pooled))


class CBAM(nn.Module):
    """Channel then spatial attention on [N, C, H, W]."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.ChannelGate = ChannelGate(dim)
        self.SpatialGate = SpatialGate()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y: torch.Tensor = self.SpatialGate(self.ChannelGate(x))
        return y


class FeatureFusionBlock(nn.Module):
    """Fuse image features x [B, Cx, H, W] into each object's g [B, K, Cg, H, W]."""

    def __init__(self, x_dim: int, g_dim: int, mid_dim: int, out_dim: int) -> None:
        super().__init__()
        self.block1 = GroupResBlock(x_dim + g_dim, mid_dim)
        self.attention = CBAM(mid_dim)
        self.block2 = GroupResBlock(mid_dim, out_dim)

    def forward(self, x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        g = self.block1(broadcast_cat(x, g))
        r = unflat(self.attention(flat(g)), g.shape[0])
        out: torch.Tensor = self.block2(g + r)
        return out


def gru_update(values: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """XMem's sensory update: h' = sig(f)*h*(1-sig(u)) + sig(u)*tanh(v).

    values [B, K, 3*Ch, H, W] holds (f, u, v) along channels; h [B, K, Ch, H, W].
    """
    ch = h.shape[2]
    forget = torch.sigmoid(values[:, :, :ch])
    update = torch.sigmoid(values[:, :, ch:2 * ch])
    new_value = torch.tanh(values[:, :, 2 * ch:])
    return forget * h * (1 - update) + update * new_value

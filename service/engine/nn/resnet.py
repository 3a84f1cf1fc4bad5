"""ResNet trunks (cut after layer3) with optional Conv-Parallel adapters.

Parameter names follow torchvision's ResNet so that XMem checkpoints load by
key. Adapters add ``<block>.adapter.*`` keys and nothing else.
"""

from __future__ import annotations

import torch
from torch import nn

from service.engine.spec import AdapterSpec, BackboneSpec


class ConvParallelAdapter(nn.Module):
    """Conv-Adapter, parallel form: grouped 3x3 -> ReLU -> 1x1 -> per-channel scale.

    Input [B, C_in, H, W] -> output [B, C_out, H/stride, W/stride]. The 1x1 conv
    starts at zero so that a newly attached adapter leaves the base model unchanged.
    """

    def __init__(self, in_dim: int, out_dim: int, stride: int, gamma: int) -> None:
        super().__init__()
        mid = max(1, in_dim // gamma)
        self.conv_dw = nn.Conv2d(in_dim, mid, 3, stride=stride, padding=1, groups=mid, bias=False)
        self.conv_pw = nn.Conv2d(mid, out_dim, 1, bias=False)
        self.alpha = nn.Parameter(torch.ones(out_dim))
        nn.init.kaiming_normal_(self.conv_dw.weight)
        nn.init.zeros_(self.conv_pw.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y: torch.Tensor = self.conv_pw(torch.relu(self.conv_dw(x)))
        return y * self.alpha.view(1, -1, 1, 1)


def _downsample(in_dim: int, out_dim: int, stride: int) -> nn.Sequential | None:
    if stride == 1 and in_dim == out_dim:
        return None
    return nn.Sequential(nn.Conv2d(in_dim, out_dim, 1, stride=stride, bias=False), nn.BatchNorm2d(out_dim))


class BasicBlock(nn.Module):
    """ResNet-18 block; the adapter sits beside conv1 (the 3x3 followed by BN+ReLU)."""

    expansion = 1

    def __init__(self, in_dim: int, planes: int, stride: int, adapter: AdapterSpec) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_dim, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = _downsample(in_dim, planes, stride)
        self.adapter = ConvParallelAdapter(in_dim, planes, stride, adapter.gamma) if adapter.enabled else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        if self.adapter is not None:
            out = out + self.adapter(x)
        out = self.bn2(self.conv2(out))
        residual = x if self.downsample is None else self.downsample(x)
        return torch.relu(out + residual)


class Bottleneck(nn.Module):
    """ResNet-50 block (stride on the 3x3); the adapter sits beside conv2."""

    expansion = 4

    def __init__(self, in_dim: int, planes: int, stride: int, adapter: AdapterSpec) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_dim, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.downsample = _downsample(in_dim, planes * 4, stride)
        self.adapter = ConvParallelAdapter(planes, planes, stride, adapter.gamma) if adapter.enabled else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        mid = torch.relu(self.bn2(self.conv2(out)))
        if self.adapter is not None:
            mid = mid + self.adapter(out)
        out = self.bn3(self.conv3(mid))
        residual = x if self.downsample is None else self.downsample(x)
        return torch.relu(out + residual)


def make_layer(spec: BackboneSpec, adapter: AdapterSpec, in_dim: int, planes: int,
               blocks: int, stride: int) -> tuple[nn.Sequential, int]:
    """Build one ResNet stage; returns it and its output channel count."""
    block = Bottleneck if spec.block == "bottleneck" else BasicBlock
    layers: list[nn.Module] = []
    for i in range(blocks):
        layers.append(block(in_dim, planes, stride if i == 0 else 1, adapter))
        in_dim = planes * block.expansion
    return nn.Sequential(*layers), in_dim


def adapter_parameters(module: nn.Module) -> list[nn.Parameter]:
    """All parameters that belong to Conv-Parallel adapters under ``module``."""
    return [p for m in module.modules() if isinstance(m, ConvParallelAdapter) for p in m.parameters()]

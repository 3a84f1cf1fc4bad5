"""Key encoder, key projection and value encoder (XMem layout, sizes from ModelSpec)."""

from __future__ import annotations

import torch
from torch import nn

from service.engine.nn.blocks import FeatureFusionBlock, GConv2d, broadcast_cat, flat, gru_update, unflat
from service.engine.nn.resnet import make_layer
from service.engine.spec import AdapterSpec, BackboneSpec, ModelSpec


class KeyEncoder(nn.Module):
    """Image [B, 3, H, W] -> (f16, f8, f4) at strides 16, 8, 4."""

    def __init__(self, spec: BackboneSpec, adapter: AdapterSpec) -> None:
        super().__init__()
        w = spec.width
        self.conv1 = nn.Conv2d(3, w, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(w)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.res2, d = make_layer(spec, adapter, w, w, spec.layers[0], 1)
        self.layer2, d = make_layer(spec, adapter, d, 2 * w, spec.layers[1], 2)
        self.layer3, d = make_layer(spec, adapter, d, 4 * w, spec.layers[2], 2)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.maxpool(torch.relu(self.bn1(self.conv1(image))))
        f4 = self.res2(x)
        f8 = self.layer2(f4)
        f16 = self.layer3(f8)
        return f16, f8, f4


class KeyProjection(nn.Module):
    """f16 [B, C, h, w] -> key [B, Ck, h, w], shrinkage d^2+1 [B, 1, h, w], selection [B, Ck, h, w]."""

    def __init__(self, in_dim: int, key_dim: int) -> None:
        super().__init__()
        self.key_proj = nn.Conv2d(in_dim, key_dim, 3, padding=1)
        self.d_proj = nn.Conv2d(in_dim, 1, 3, padding=1)
        self.e_proj = nn.Conv2d(in_dim, key_dim, 3, padding=1)
        nn.init.orthogonal_(self.key_proj.weight)
        assert self.key_proj.bias is not None  # made with bias (Conv2d's default)
        nn.init.zeros_(self.key_proj.bias)

    def forward(self, f16: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        shrinkage = self.d_proj(f16) ** 2 + 1
        selection = torch.sigmoid(self.e_proj(f16))
        return self.key_proj(f16), shrinkage, selection


class HiddenReinforcer(nn.Module):
    """Deep update of the sensory memory from the value features."""

    def __init__(self, g_dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.transform = GConv2d(g_dim + hidden_dim, hidden_dim * 3, 3, padding=1)

    def forward(self, g: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        return gru_update(self.transform(torch.cat([g, h], 2)), h)


class ValueEncoder(nn.Module):
    """(image, f16, hidden, masks) -> (value [B, K, Cv, h, w], deep-updated hidden [B, K, Ch, h, w]).

    Per object the input is image (3) + its mask + the sum of the other
    objects' masks (5 channels), or image + mask (4) for single-object models.
    The stem order conv1 -> bn1 -> maxpool -> relu is XMem's.
    """

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        bb = spec.value_backbone
        w = bb.width
        self.single_object = spec.value_input_channels == 4
        self.conv1 = nn.Conv2d(spec.value_input_channels, w, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(w)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.layer1, d = make_layer(bb, spec.adapters, w, w, bb.layers[0], 1)
        self.layer2, d = make_layer(bb, spec.adapters, d, 2 * w, bb.layers[1], 2)
        self.layer3, d = make_layer(bb, spec.adapters, d, 4 * w, bb.layers[2], 2)
        f16_dim = spec.key_backbone.out_dims[0]
        self.fuser = FeatureFusionBlock(f16_dim, d, spec.value_dim, spec.value_dim)
        self.hidden_reinforce = HiddenReinforcer(spec.value_dim, spec.hidden_dim)

    def forward(self, image: torch.Tensor, f16: torch.Tensor, hidden: torch.Tensor,
                masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        batch = masks.shape[0]
        if self.single_object:
            g = masks.unsqueeze(2)
        else:
            others = masks.sum(1, keepdim=True) - masks
            g = torch.stack([masks, others], 2)
        g = flat(broadcast_cat(image, g))
        g = torch.relu(self.maxpool(self.bn1(self.conv1(g))))
        g16 = unflat(self.layer3(self.layer2(self.layer1(g))), batch)
        value = self.fuser(f16, g16)
        return value, self.hidden_reinforce(value, hidden)

"""Reading XMem-layout checkpoints: key validation and architecture inference."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import torch

from service.engine.nn.network import ImosNet
from service.engine.spec import AdapterSpec, BackboneSpec, ModelSpec
from service.errors import CheckpointError

_MAX_NAMED = 12


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Load a .pth state dict (plain, or wrapped under 'model'/'state_dict') onto the CPU."""
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {path} does not exist") from None
    except Exception as exc:  # torch raises many kinds for a corrupt file
        raise CheckpointError(f"cannot read checkpoint {path.name}: {exc}") from None
    if isinstance(raw, Mapping):
        for wrapper in ("state_dict", "model", "network"):
            if wrapper in raw and isinstance(raw[wrapper], Mapping):
                raw = raw[wrapper]
                break
    if not isinstance(raw, Mapping) or not all(isinstance(v, torch.Tensor) for v in raw.values()):
        raise CheckpointError(f"{path.name} is not a state dict of tensors")
    return {k.removeprefix("module."): v for k, v in raw.items()}


def _backbone(sd: Mapping[str, torch.Tensor], prefix: str, stages: tuple[str, str, str]) -> BackboneSpec:
    bottleneck = any(k.startswith(f"{prefix}.{stages[0]}.0.conv3") for k in sd)
    layers = (_blocks(sd, prefix, stages[0]), _blocks(sd, prefix, stages[1]), _blocks(sd, prefix, stages[2]))
    width = int(sd[f"{prefix}.conv1.weight"].shape[0])
    return BackboneSpec(block="bottleneck" if bottleneck else "basic", layers=layers, width=width)


def _blocks(sd: Mapping[str, torch.Tensor], prefix: str, stage: str) -> int:
    """The number of residual blocks of one stage (its highest block index + 1)."""
    idx = {int(m.group(1)) for k in sd if (m := re.match(rf"{re.escape(prefix)}\.{stage}\.(\d+)\.", k))}
    if not idx:
        raise CheckpointError(f"checkpoint has no {prefix}.{stage} blocks")
    return max(idx) + 1


def infer_spec(sd: Mapping[str, torch.Tensor]) -> ModelSpec:
    """Read every dimension of the architecture from the weights themselves."""
    try:
        hidden3 = sd["decoder.hidden_update.transform.weight"].shape[0]
        adapters = [k for k in sd if ".adapter." in k]
        gamma = 4
        if adapters:
            dw = next(v for k, v in sd.items() if k.endswith("adapter.conv_dw.weight"))
            gamma = int(dw.shape[1])
        return ModelSpec(
            key_backbone=_backbone(sd, "key_encoder", ("res2", "layer2", "layer3")),
            value_backbone=_backbone(sd, "value_encoder", ("layer1", "layer2", "layer3")),
            key_dim=int(sd["key_proj.key_proj.weight"].shape[0]),
            value_dim=int(sd["value_encoder.fuser.block2.conv2.weight"].shape[0]),
            hidden_dim=int(hidden3 // 3),
            decoder_dims=(int(sd["decoder.fuser.block2.conv2.weight"].shape[0]),
                          int(sd["decoder.up_16_8.out_conv.conv2.weight"].shape[0]),
                          int(sd["decoder.up_8_4.out_conv.conv2.weight"].shape[0])),
            hidden_mid_dim=int(sd["decoder.hidden_update.g16_conv.weight"].shape[0]),
            value_input_channels=int(sd["value_encoder.conv1.weight"].shape[1]),
            adapters=AdapterSpec(enabled=bool(adapters), gamma=gamma),
        )
    except KeyError as exc:
        raise CheckpointError(f"not an XMem-layout checkpoint: missing {exc.args[0]}") from None


def pad_single_object(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A single-object checkpoint has 4 value-encoder input channels; add the
    'other objects' channel with zero weights so it runs as a multi-object model."""
    w = sd["value_encoder.conv1.weight"]
    if w.shape[1] == 4:
        sd = dict(sd)
        sd["value_encoder.conv1.weight"] = torch.cat([w, torch.zeros_like(w[:, :1])], 1)
    return sd


def check_keys(sd: Mapping[str, torch.Tensor], spec: ModelSpec) -> None:
    """Raise CheckpointError naming missing, unexpected or mis-shaped tensors."""
    expected = {k: v.shape for k, v in ImosNet(spec).state_dict().items()}
    missing = sorted(set(expected) - set(sd))
    unexpected = sorted(set(sd) - set(expected))
    shapes = sorted(k for k in set(expected) & set(sd) if tuple(sd[k].shape) != tuple(expected[k]))
    problems = []
    for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", shapes)):
        if keys:
            more = f" (+{len(keys) - _MAX_NAMED} more)" if len(keys) > _MAX_NAMED else ""
            shown = ", ".join(keys[:_MAX_NAMED]) + more
            problems.append(f"{len(keys)} {label} key(s): {shown}")
    if problems:
        raise CheckpointError("checkpoint does not match the architecture: " + "; ".join(problems))


def build_network(sd: Mapping[str, torch.Tensor], spec: ModelSpec) -> ImosNet:
    """A network in eval mode with exactly these weights (strict)."""
    check_keys(sd, spec)
    net = ImosNet(spec)
    net.load_state_dict(dict(sd), strict=True)
    return net.eval()

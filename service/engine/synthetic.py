"""Deterministic synthetic weights (the XMem conformance fixture's rule).

Each tensor is a pure function of its key and shape, so any member of the model
family gets reproducible, well-conditioned weights without a download: used by
the parity tests and by benchmarks of architectures whose real weights are absent.
"""

from __future__ import annotations

import math
import re
import zlib
from collections.abc import Iterable

import numpy as np
import torch

_RESIDUAL_LAST_BN = re.compile(r"(key_encoder\.(res2|layer2|layer3)\.\d+\.bn3|value_encoder\.layer[123]\.\d+\.bn2)")


def synthetic_tensor(key: str, shape: tuple[int, ...], bn_prefixes: set[str]) -> np.ndarray:
    """One tensor by the rule: BN stats near identity, He-normal conv/linear weights,
    small biases; the last BN of each residual branch x0.2 and the final predictor x0.25."""
    prefix, leaf = key.rsplit(".", 1)
    rng = np.random.default_rng(zlib.crc32(key.encode("utf-8")))
    if prefix in bn_prefixes:
        if leaf == "num_batches_tracked":
            return np.zeros(shape, np.int64)
        if leaf == "weight":
            x = 1.0 + rng.normal(0.0, 0.05, size=shape)
            x = x * 0.2 if _RESIDUAL_LAST_BN.fullmatch(prefix) else x
        elif leaf in ("bias", "running_mean"):
            x = rng.normal(0.0, 0.05, size=shape)
        elif leaf == "running_var":
            x = 1.0 + np.abs(rng.normal(0.0, 0.05, size=shape))
        else:
            raise ValueError(f"unknown BatchNorm entry {key}")
    elif leaf in ("weight", "alpha") and (len(shape) >= 2 or leaf == "alpha"):
        if leaf == "alpha":
            return np.ones(shape, np.float32)
        x = rng.normal(0.0, math.sqrt(2.0 / int(np.prod(shape[1:]))), size=shape)
        x = x * 0.25 if key == "decoder.pred.weight" else x
    elif leaf == "bias":
        x = rng.normal(0.0, 0.01, size=shape)
    else:
        raise ValueError(f"no synthetic rule for {key} {shape}")
    return x.astype(np.float32)


def synthetic_state_dict(entries: Iterable[tuple[str, tuple[int, ...]]]) -> dict[str, torch.Tensor]:
    """(key, shape) pairs -> state dict by the rule."""
    items = list(entries)
    bn = {k[: -len(".running_mean")] for k, _ in items if k.endswith(".running_mean")}
    return {k: torch.from_numpy(synthetic_tensor(k, tuple(s), bn)) for k, s in items}


def synthetic_for(net: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Synthetic weights for every entry of net's state dict."""
    return synthetic_state_dict((k, tuple(v.shape)) for k, v in net.state_dict().items())

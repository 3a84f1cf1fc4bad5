"""Torch backend: runs the stages of an ImosNet on CPU or CUDA.

How each precision runs (docs/benchmarks.md, "Fast paths", has the numbers):

- CPU fp32: convolutions stay NCHW, which keeps the results within rounding of
  XMem's (NHWC convolutions double the difference to XMem's outputs on the parity
  fixture); max pooling runs in channels_last, 5x faster than torch's NCHW kernel
  and bit-identical.
- CPU bf16: each BatchNorm folded into its convolution, weights converted to
  bfloat16 once and stored channels_last (NHWC, what oneDNN's AVX-512 BF16 / AMX
  kernels use), so every op runs in bfloat16 without reorders; autocast would
  cast every weight on every call, reorder NCHW around each convolution and keep
  BatchNorm in float32.
- CUDA: fp16 / bf16 by autocast, as XMem does.
- ``compile=True`` (opt-in) wraps each stage in ``torch.compile``; on CUDA with
  mode "reduce-overhead", which replays the compiled stages as CUDA graphs.
  Compiling costs tens of seconds per new input shape on first use.

Every stage returns contiguous float32 tensors: the memory reader works in float32.
"""

from __future__ import annotations

import contextlib
import copy
import logging
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from service.engine.backends.base import KeyFeatures
from service.engine.host import cpu_info, native_bf16, onednn_isa_cap
from service.engine.nn.network import ImosNet
from service.errors import BackendUnavailable

_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
# (convolution, batch norm) child names that follow each other directly in the network's modules.
_CONV_BN = (("conv1", "bn1"), ("conv2", "bn2"), ("conv3", "bn3"), ("0", "1"))
ModuleT = TypeVar("ModuleT", bound=nn.Module)


def fold_batchnorm(module: ModuleT) -> ModuleT:
    """Fold every BatchNorm2d that directly follows a Conv2d into it (eval mode), in place.

    The network applies each ``bnX`` right after its ``convX`` (and ``downsample.1`` after
    ``downsample.0``), so the folded convolution computes the same function.
    """
    for child in module.children():
        fold_batchnorm(child)
    mods = module._modules
    for conv_name, bn_name in _CONV_BN:
        conv, bn = mods.get(conv_name), mods.get(bn_name)
        if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
            mods[conv_name] = fuse_conv_bn_eval(conv, bn)
            mods[bn_name] = nn.Identity()
    return module


class ChannelsLastMaxPool2d(nn.MaxPool2d):
    """MaxPool2d that pools in channels_last and returns the input's layout (exact: pooling only compares)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.is_contiguous(memory_format=torch.channels_last):
            pooled: torch.Tensor = super().forward(x)
            return pooled
        pooled = super().forward(x.contiguous(memory_format=torch.channels_last))
        return pooled.contiguous()


def _fast_max_pool(module: ModuleT) -> ModuleT:
    """Swap every nn.MaxPool2d for a ChannelsLastMaxPool2d with the same settings, in place."""
    for name, child in module.named_children():
        if type(child) is nn.MaxPool2d:
            module._modules[name] = ChannelsLastMaxPool2d(child.kernel_size, child.stride, child.padding,
                                                          child.dilation, child.return_indices, child.ceil_mode)
        else:
            _fast_max_pool(child)
    return module


def cpu_has_fast_bf16() -> bool:
    """Whether bf16 runs natively on this CPU (AVX512_BF16, AMX or Arm BF16) with oneDNN allowed to use it."""
    try:
        supported = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False
    return supported and native_bf16(cpu_info(), onednn_isa_cap())


def _warn_if_bf16_is_emulated() -> None:
    # Not refused: the results are right, only slow, and one configuration may serve mixed nodes.
    if not cpu_has_fast_bf16():
        cap = onednn_isa_cap()
        logging.getLogger(__name__).warning(
            "bf16 on this CPU (%s%s) is emulated: it runs 2.5-5x slower than fp32 (no AVX512_BF16 or AMX); "
            "use fp32 here, or ONNX Runtime int8 where the CPU has VNNI", torch.backends.cpu.get_cpu_capability(),
            f", oneDNN capped at {cap}" if cap else "")


def _compile_mode(device: torch.device) -> str:
    # CUDA graphs remove the launch overhead of the many small kernels; on CPU there is none to remove.
    return "reduce-overhead" if device.type == "cuda" else "default"


class TorchStages:
    """Stages on a torch module; ``precision`` fp32, fp16 (CUDA) or bf16; optional torch.compile."""

    name = "torch"

    def __init__(self, net: ImosNet, device: str = "cpu", precision: str = "fp32", compile: bool = False) -> None:
        if precision not in _DTYPES:
            raise BackendUnavailable(f"unknown precision {precision!r}; use fp32, fp16 or bf16")
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise BackendUnavailable("device cuda requested but torch sees no CUDA GPU here")
        if precision == "fp16" and not device.startswith("cuda"):
            raise BackendUnavailable("fp16 needs a CUDA device; use bf16 on CPU")
        self.device = torch.device(device)
        self.precision = precision
        self.hidden_dim = net.spec.hidden_dim
        cpu = self.device.type == "cpu"
        if cpu and precision == "bf16":
            _warn_if_bf16_is_emulated()
        # On CPU the stages run in the weights' dtype; on CUDA autocast picks per op.
        self._dtype = _DTYPES[precision] if cpu else torch.float32
        self._autocast = None if cpu or precision == "fp32" else _DTYPES[precision]
        self.net = self._prepare(net, cpu)
        self.compiled = compile
        self._stages: dict[str, Callable[..., Any]] = {
            "key": self.net.encode_key, "value": self.net.encode_value, "segment": self.net.segment}
        if compile:
            mode = _compile_mode(self.device)
            self._stages = {name: torch.compile(fn, mode=mode) for name, fn in self._stages.items()}

    def _prepare(self, net: ImosNet, cpu: bool) -> ImosNet:
        net = net.to(self.device).eval()
        if not cpu:
            return net
        # A copy: the caller's network stays as it was (it may be exported, trained or reused).
        net = _fast_max_pool(copy.deepcopy(net))
        if self._dtype == torch.float32:
            return net
        net = fold_batchnorm(net).to(self._dtype)
        # Module.to converts in place and returns the module; torch's overloads of it omit memory_format.
        net.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        return net

    @contextlib.contextmanager
    def _mode(self) -> Iterator[None]:
        with torch.inference_mode():
            if self._autocast is None:
                yield
            else:
                with torch.autocast(self.device.type, dtype=self._autocast):
                    yield

    def _run(self, stage: str, *args: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """One stage: inputs cast to the compute dtype, outputs as contiguous float32 (always copied
        when compiled: CUDA graphs write every replay's outputs into the same buffers)."""
        with self._mode():
            if self.compiled and self.device.type == "cuda":
                torch.compiler.cudagraph_mark_step_begin()  # outputs are copied out below
            out = self._stages[stage](*(a.to(self._dtype) for a in args))
            return tuple(t.to(torch.float32, memory_format=torch.contiguous_format, copy=self.compiled)
                         for t in out)

    def encode_key(self, image: torch.Tensor) -> KeyFeatures:
        return KeyFeatures(*self._run("key", image))

    def encode_value(self, image: torch.Tensor, f16: torch.Tensor, hidden: torch.Tensor,
                     masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        value, new_hidden = self._run("value", image, f16, hidden, masks)
        return value, new_hidden

    def segment(self, feats: KeyFeatures, readout: torch.Tensor,
                hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits, new_hidden = self._run("segment", feats.f16, feats.f8, feats.f4, readout, hidden)
        return logits, new_hidden

"""``precision=auto``: the fastest precision a backend has on this host, among those validated on dev.

One configuration then serves a mixed fleet. The CPU flags only say which precisions are worth timing
(``candidates``: bf16 where the CPU multiplies it natively, AVX512_BF16 / AMX / Arm BF16; int8 where it
has an 8-bit dot product, VNNI / AMX-INT8); engine.precision_probe times them against fp32 on this host
and keeps the fastest whose masks agree, because a flag is no promise of speed (ONNX Runtime's int8 ran
3x slower than fp32 on an Intel Xeon with AMX). TensorRT takes fp16, as XMem's own evaluation runs
(autocast). bf16 and int8 moved dev J&F by at most 0.003 (docs/benchmarks.md).
"""

from __future__ import annotations

from dataclasses import dataclass

AUTO = "auto"


@dataclass(frozen=True)
class HostSpeed:
    """What decides the choice: native bf16 and fast int8 on this CPU."""

    bf16_native: bool
    int8_fast: bool


@dataclass(frozen=True)
class Choice:
    precision: str
    reason: str


def choose(backend: str, device: str, host: HostSpeed) -> Choice:
    """The precision ``auto`` stands for on this backend, device and host."""
    if backend == "tensorrt" or (backend == "torch" and device.startswith("cuda")):
        return Choice("fp16", "GPU: half precision, as XMem evaluates")
    if backend == "torch":
        if host.bf16_native:
            return Choice("bf16", "this CPU multiplies bf16 natively (AVX512_BF16, AMX or Arm BF16)")
        return Choice("fp32", "this CPU has no native bf16 (emulated bf16 is slower than fp32)")
    if backend == "onnx":
        if host.int8_fast:
            return Choice("int8", "this CPU has an 8-bit dot product (VNNI or AMX-INT8)")
        return Choice("fp32", "this CPU has no 8-bit dot product (VNNI or AMX-INT8)")
    return Choice("fp32", f"no faster precision known for backend {backend!r}")


def candidates(backend: str, device: str, host: HostSpeed) -> tuple[str, ...]:
    """The precisions besides fp32 worth timing for ``auto`` here (engine.precision_probe measures
    them): never one the CPU can only emulate. TensorRT is left to ``choose``: each precision is an
    engine build of minutes, and fp16 is what its GPUs are built for."""
    if backend == "torch" and device.startswith("cuda"):
        return ("fp16", "bf16")
    if backend == "torch":
        return ("bf16",) if host.bf16_native else ()
    if backend == "onnx":
        return ("int8",) if host.int8_fast else ()
    return ()


def this_host() -> HostSpeed:
    """The running machine's answers (torch's bf16 check, the CPU flags, a oneDNN ISA cap)."""
    from service.engine.backends.onnx_quantize import cpu_has_vnni
    from service.engine.backends.torch_backend import cpu_has_fast_bf16

    return HostSpeed(bf16_native=cpu_has_fast_bf16(), int8_fast=cpu_has_vnni())


def resolve(backend: str, device: str, precision: str) -> Choice:
    """``precision`` itself unless it is ``auto``."""
    if precision != AUTO:
        return Choice(precision, "as configured")
    return choose(backend, device, this_host())

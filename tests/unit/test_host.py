"""What the CPU offers: flags from /proc/cpuinfo (x86 and Arm) and whether bf16 is native or emulated."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from service.engine.host import CpuInfo, native_bf16, onednn_isa_cap, parse_cpuinfo
from tests.conftest import ROOT

X86 = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8275CL CPU @ 3.00GHz
flags\t\t: fpu sse2 avx2 avx512f avx512bw avx512_vnni

processor\t: 1
flags\t\t: something else
"""
ARM = """processor\t: 0
BogoMIPS\t: 2100.00
Features\t: fp asimd sve bf16 i8mm
CPU implementer\t: 0x41
"""


def test_x86_flags_come_from_the_first_processor() -> None:
    info = parse_cpuinfo(X86)
    assert info.model == "Intel(R) Xeon(R) Platinum 8275CL CPU @ 3.00GHz"
    assert info.flags == frozenset({"fpu", "sse2", "avx2", "avx512f", "avx512bw", "avx512_vnni"})


def test_arm_features_count_as_flags() -> None:
    info = parse_cpuinfo(ARM)
    assert info.model is None and {"bf16", "sve"} <= info.flags


@pytest.mark.parametrize(("flags", "cap", "native"), [
    ({"avx2", "avx512f", "avx512_vnni"}, None, False),      # Cascade Lake: AVX-512, bf16 only emulated
    ({"avx2"}, None, False),                                 # AVX2-only EPYC / desktop
    ({"avx512f", "avx512_bf16"}, None, True),               # Cooper Lake, Zen 4
    ({"avx512_bf16", "amx_bf16"}, None, True),               # Sapphire Rapids
    ({"avx512_bf16", "amx_bf16"}, "AVX512_CORE", False),     # the same, oneDNN capped below bf16
    ({"avx512_bf16", "amx_bf16"}, "AVX512_CORE_AMX", True),
    ({"asimd", "bf16"}, None, True),                         # Graviton 3
    ({"asimd"}, None, False),                                # Graviton 2
])
def test_native_bf16(flags: set[str], cap: str | None, native: bool) -> None:
    assert native_bf16(CpuInfo(None, frozenset(flags)), cap) is native


def test_the_isa_cap_is_read_from_either_variable_in_any_case() -> None:
    assert onednn_isa_cap({}) is None
    assert onednn_isa_cap({"ONEDNN_MAX_CPU_ISA": "avx512_core"}) == "AVX512_CORE"
    assert onednn_isa_cap({"DNNL_MAX_CPU_ISA": " Avx2 "}) == "AVX2"


def test_torch_bf16_under_a_cap_below_bf16_is_reported_emulated_and_warned() -> None:
    # torch's own check still says bf16 is supported on AVX-512 without BF16; the service must not believe it.
    code = ("import logging, torch; from service.engine.backends import torch_backend as tb; "
            "logging.basicConfig(level='WARNING'); "
            "print(torch.ops.mkldnn._is_mkldnn_bf16_supported(), tb.cpu_has_fast_bf16()); "
            "tb._warn_if_bf16_is_emulated()")
    env = {**os.environ, "ONEDNN_MAX_CPU_ISA": "AVX512_CORE", "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[-1] == "False"
    assert "is emulated" in out.stderr and "oneDNN capped at AVX512_CORE" in out.stderr

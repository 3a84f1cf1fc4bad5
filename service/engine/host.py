"""What this machine's CPU offers, as far as it decides which fast paths pay."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

# CPU flags with native bf16 dot products: x86 (/proc/cpuinfo "flags") and aarch64 ("Features").
_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16"})
# oneDNN ISA caps below these have no bf16 dot product: bf16 is then emulated (oneDNN's names, both spellings).
_BF16_ISAS = frozenset({"ALL", "DEFAULT", "AVX512_CORE_BF16", "AVX512_CORE_FP16", "AVX512_CORE_AMX",
                        "AVX512_CORE_AMX_FP16", "AVX10_1_512", "AVX10_1_512_AMX", "AVX10_1_512_AMX_FP16",
                        "AVX10_2_512", "AVX10_2_512_AMX_2"})


@dataclass(frozen=True)
class CpuInfo:
    """The first CPU's model name and flags (x86 "flags", aarch64 "Features") from /proc/cpuinfo
    (None and empty where it is not readable)."""

    model: str | None
    flags: frozenset[str]


def cpu_info() -> CpuInfo:
    try:
        return parse_cpuinfo(Path("/proc/cpuinfo").read_text())
    except OSError:
        return CpuInfo(None, frozenset())


def parse_cpuinfo(text: str) -> CpuInfo:
    """CpuInfo from the text of /proc/cpuinfo (its first processor's block)."""
    pairs = (line.split(":", 1) for line in text.split("\n\n")[0].splitlines() if ":" in line)
    fields = {k.strip(): v.strip() for k, v in pairs}
    flags = fields.get("flags") or fields.get("Features") or ""
    return CpuInfo(fields.get("model name"), frozenset(flags.split()))


def onednn_isa_cap(env: Mapping[str, str] | None = None) -> str | None:
    """The ISA oneDNN is capped at by ONEDNN_MAX_CPU_ISA (or its old name DNNL_MAX_CPU_ISA), if any."""
    env = os.environ if env is None else env
    cap = env.get("ONEDNN_MAX_CPU_ISA") or env.get("DNNL_MAX_CPU_ISA")
    return cap.strip().upper() if cap else None


def native_bf16(info: CpuInfo, isa_cap: str | None) -> bool:
    """Whether bf16 matmuls and convolutions run on bf16 hardware here rather than emulated in fp32 units.

    An AVX-512 CPU without AVX512_BF16 (Skylake, Cascade Lake) passes torch's own bf16 check, yet runs
    imos-lite 2.5-3x slower in bf16 than in fp32; AVX2 about 5x (docs/benchmarks.md, bf16)."""
    return bool(info.flags & _BF16_FLAGS) and (isa_cap is None or isa_cap in _BF16_ISAS)

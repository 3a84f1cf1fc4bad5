"""What this machine's CPU offers, as far as it decides which fast paths pay."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class CpuInfo:
    """The first CPU's model name and flags from /proc/cpuinfo (None and empty where it is not readable)."""

    model: str | None
    flags: frozenset[str]


def cpu_info() -> CpuInfo:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return CpuInfo(None, frozenset())
    pairs = (line.split(":", 1) for line in text.split("\n\n")[0].splitlines() if ":" in line)
    fields = {k.strip(): v.strip() for k, v in pairs}
    return CpuInfo(fields.get("model name"), frozenset(fields.get("flags", "").split()))

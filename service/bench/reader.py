"""``imos bench reader``: the memory read, XMem's dense affinity vs the gathered top-k read, per memory size.

M = query positions of one frame (900 at 480p: 30 x 30 at stride 16); N = memory entries
(900 per memory frame; XMem's defaults reach 10 working frames + 10,000 long-term entries).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any

import torch

from service.engine.memory.affinity import GroupValues, dense_read, gathered_read, prefer_gathered


def _median_s(fn: Callable[[], Any], repeat: int, device: torch.device) -> float:
    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    fn()
    times = []
    for _ in range(repeat):
        sync()
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def measure_reader(device: str = "cpu", queries: int = 900, sizes: tuple[int, ...] = (900, 2700, 9000, 19000),
                   key_dim: int = 64, value_dim: int = 512, top_k: int = 30, repeat: int = 5) -> dict[str, Any]:
    """Median ms of dense_read and gathered_read for each memory size N (one object, random keys)."""
    dev = torch.device(device)
    gen = torch.Generator().manual_seed(0)
    rows = []
    for n in sizes:
        mk = torch.randn(1, key_dim, n, generator=gen).to(dev)
        ms = (torch.rand(1, 1, n, generator=gen) + 1).to(dev)
        qk = torch.randn(1, key_dim, queries, generator=gen).to(dev)
        qe = torch.rand(1, key_dim, queries, generator=gen).to(dev)
        groups = [GroupValues(((0, n),), (torch.randn(1, value_dim, n, generator=gen).to(dev),))]
        with torch.inference_mode():
            args = (mk, ms, qk, qe, top_k, groups)
            dense = _median_s(functools.partial(dense_read, *args), repeat, dev)
            gathered = _median_s(functools.partial(gathered_read, *args), repeat, dev)
        rows.append({"memory_entries": n, "dense_ms": round(1000 * dense, 2), "gathered_ms": round(1000 * gathered, 2),
                     "gathered_speedup": round(dense / gathered, 2)})
    return {"device": device, "queries": queries, "top_k": top_k, "value_dim": value_dim,
            "threads": torch.get_num_threads(), "engine_uses": "gathered" if prefer_gathered(dev) else "dense",
            "rows": rows}

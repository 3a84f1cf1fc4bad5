"""``imos bench state``: serialised memory-state bytes per frame and object, fp32 vs fp16, the
checkpoint write/read time as a fraction of the frame time, and what checkpoints every N frames write
as full records against chains of deltas."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from service.bench.synthetic_video import moving_ellipses
from service.engine import state_codec, state_delta
from service.engine.loader import load_engine
from service.worker.checkpoints import MAX_DELTAS


def measure_state(repo: Path, model: str, size: int, frames: int, objects: int,
                  backend: str = "torch", checkpoint_every: int = 10) -> dict[str, Any]:
    engine = load_engine(repo, model, backend)
    prop = engine.propagator({"size": "-1"})
    video, masks = moving_ellipses(frames, size, size, objects)
    st, _ = prop.start(video[0], masks[0], 0, "forward", None)
    frame_s, rows, states = [], [], []
    for t in range(1, frames):
        started = time.perf_counter()
        st, _ = prop.advance(st, video[t])
        frame_s.append(time.perf_counter() - started)
        rows.append(_codec_costs(st))
        states.append(st)
    mean_frame = float(np.mean(frame_s[2:] or frame_s))
    last = rows[-1]
    return {
        "model": engine.model_id, "size": [size, size], "frames": frames, "objects": objects,
        "frame_ms": round(1000 * mean_frame, 2),
        "state_bytes_fp32": last["fp32"], "state_bytes_fp16": last["fp16"],
        "bytes_per_memory_frame_fp32": round(last["fp32"] / max(last["memory_frames"], 1)),
        "bytes_per_object_fp32": round(last["fp32"] / objects),
        "write_ms": round(1000 * float(np.mean([r["write_s"] for r in rows])), 3),
        "read_ms": round(1000 * float(np.mean([r["read_s"] for r in rows])), 3),
        "checkpoint_fraction_of_frame": round(
            float(np.mean([r["write_s"] + r["read_s"] for r in rows])) / mean_frame, 4),
        "growth": [{"frame": i + 1, "bytes_fp32": r["fp32"]} for i, r in enumerate(rows) if (i + 1) % 10 == 0],
        "checkpoints": _chain_costs(states, checkpoint_every),
    }


def _chain_costs(states: list[Any], every: int) -> dict[str, Any]:
    """Bytes a worker checkpointing every ``every`` frames writes as full records only, and as chains of
    deltas (state_delta: a full record, then up to MAX_DELTAS deltas)."""
    full_only, chained, fulls, deltas, delta_ms, chain = 0, 0, 0, 0, [], None
    for st in states[every - 1::every]:
        full_only += len(state_codec.encode(st))
        started = time.perf_counter()
        record = state_delta.next_record(st, chain, max_deltas=MAX_DELTAS)
        if record.kind == "delta":
            delta_ms.append(1000 * (time.perf_counter() - started))
            deltas += 1
        else:
            fulls += 1
        chained, chain = chained + len(record.data), record.chain
    return {"every": every, "count": fulls + deltas, "full_records": fulls, "deltas": deltas,
            "bytes_full_only": full_only, "bytes_with_deltas": chained,
            "ratio": round(chained / max(full_only, 1), 3),
            "delta_encode_ms": round(float(np.mean(delta_ms)), 3) if delta_ms else None}


def _codec_costs(st: Any) -> dict[str, Any]:
    t0 = time.perf_counter()
    full = state_codec.encode(st)
    t1 = time.perf_counter()
    state_codec.decode(full)
    t2 = time.perf_counter()
    half = state_codec.encode(st, fp16=True)
    mem = st.core.memory
    frames = (mem.work.size + mem.long.size) / max(mem.hw, 1)
    return {"fp32": len(full), "fp16": len(half), "write_s": t1 - t0, "read_s": t2 - t1, "memory_frames": frames}

"""PassState <-> bytes: a versioned header, a JSON table of tensors, raw data.

Layout: MAGIC (8 bytes) | version u16 | header length u32 | header JSON | blob.
The header names every tensor with dtype, shape, offset and length; the blob
is checked by CRC32. fp16 storage halves the size of float tensors.
"""

from __future__ import annotations

import dataclasses
import json
import struct
import zlib
from typing import Any

import numpy as np
import torch

from service.engine.memory.manager import Memory
from service.engine.memory.store import KVStore
from service.engine.preprocess import Geometry
from service.engine.presence import Presence
from service.engine.processor import DirectionState
from service.engine.spec import MemoryConfig
from service.engine.state import PassState
from service.errors import StateError

MAGIC = b"IMOSSTAT"
VERSION = 1
_DTYPES = {"float32": torch.float32, "float16": torch.float16}
# counts that accumulate (and presence peaks, pixel counts past fp16's exact range) stay float32 in fp16 records
_FULL_PRECISION = ("use_count", "life_count", "presence.peak")
_STORE_FIELDS = ("key", "shrinkage", "selection", "use_count", "life_count")


def encode(state: PassState, fp16: bool = False, chain: str | None = None) -> bytes:
    """Serialise; with fp16 the float memory tensors are stored at half precision
    (usage counts stay float32: they accumulate and need the range). ``chain`` names this record as
    the base that later deltas (state_delta) extend."""
    meta = meta_of(state)
    if chain is not None:
        meta["chain"] = chain
    return pack(MAGIC, meta, state_tensors(state), fp16)


def state_tensors(state: PassState) -> dict[str, torch.Tensor]:
    """Every tensor of the state by its record name (work.key, long.values.0, hidden, ...)."""
    tensors: dict[str, torch.Tensor] = {}
    core = state.core
    for store_name in ("work", "long"):
        store: KVStore = getattr(core.memory, store_name)
        for f in _STORE_FIELDS:
            t = getattr(store, f)
            if t is not None:
                tensors[f"{store_name}.{f}"] = t
        for gi, gv in enumerate(store.values):
            tensors[f"{store_name}.values.{gi}"] = gv
    if core.hidden is not None:
        tensors["hidden"] = core.hidden
    if core.prev_grey is not None and core.prev_prob is not None:
        tensors["prev.grey"] = core.prev_grey
        tensors["prev.prob"] = core.prev_prob
    if core.presence is not None:
        tensors["presence.peak"] = core.presence.peak
        tensors["presence.ended"] = core.presence.ended
    return tensors


def pack(magic: bytes, meta: dict[str, Any], tensors: dict[str, torch.Tensor], fp16: bool,
         extra: dict[str, dict[str, Any]] | None = None, version: int = VERSION) -> bytes:
    """magic | version | header (meta, tensor table with ``extra`` fields per name, CRC) | blob."""
    table, chunks, offset = [], [], 0
    for name, t in tensors.items():
        half = fp16 and not name.endswith(_FULL_PRECISION)
        arr = t.detach().to("cpu", torch.float16 if half else torch.float32).contiguous().numpy()
        raw = arr.tobytes()
        table.append({"name": name, "dtype": str(arr.dtype), "shape": list(arr.shape),
                      "offset": offset, "nbytes": len(raw), **(extra or {}).get(name, {})})
        chunks.append(raw)
        offset += len(raw)
    blob = b"".join(chunks)
    header = json.dumps({"meta": meta, "tensors": table, "crc32": zlib.crc32(blob),
                         "blob_bytes": len(blob)}).encode()
    return magic + struct.pack("<HI", version, len(header)) + header + blob


def payload_bytes(state: PassState, fp16: bool = False) -> int:
    """The tensor bytes a full record of this state holds (its size less the header), without encoding."""
    total = 0
    for name, t in state_tensors(state).items():
        half = fp16 and not name.endswith(_FULL_PRECISION)
        total += t.numel() * (2 if half else 4)
    return total


def meta_of(state: PassState) -> dict[str, Any]:
    core = state.core
    return {
        "direction": state.direction, "anchor": state.anchor, "cursor": state.cursor,
        "num_frames": state.num_frames, "object_ids": list(state.object_ids), "model": state.model,
        "geometry": dataclasses.asdict(state.geometry), "config": dataclasses.asdict(state.config),
        "steps": core.steps, "last_mem": core.last_mem, "last_deep": core.last_deep,
        "num_objects": core.num_objects, "hw": core.memory.hw,
        "work_count_usage": core.memory.work.count_usage, "long_count_usage": core.memory.long.count_usage,
        "work_groups": [list(g) for g in core.memory.work.groups],
        "long_groups": [list(g) for g in core.memory.long.groups],
        **({"weights": state.weights} if state.weights else {}),  # only adapted passes name their weights
    }


def decode(data: bytes, device: torch.device | str = "cpu") -> PassState:
    """Inverse of encode; raises StateError on any inconsistency. Tensors come back float32."""
    header, blob = unpack(data, MAGIC)
    return build(header["meta"], {e["name"]: tensor(e, blob, device) for e in header["tensors"]})


def build(m: dict[str, Any], tensors: dict[str, torch.Tensor]) -> PassState:
    """A PassState from a record's meta and its tensors by name."""
    try:
        memory = Memory(work=_store(m, "work", tensors), long=_store(m, "long", tensors), hw=int(m["hw"]))
        core = DirectionState(memory=memory, steps=int(m["steps"]), last_mem=int(m["last_mem"]),
                              last_deep=int(m["last_deep"]), num_objects=int(m["num_objects"]),
                              hidden=tensors.get("hidden"), prev_grey=_grey(tensors.get("prev.grey")),
                              prev_prob=tensors.get("prev.prob"), presence=_presence(tensors))
        g = m["geometry"]
        geometry = Geometry(g["height"], g["width"], g["rh"], g["rw"], tuple(g["pad"]))
        return PassState(direction=m["direction"], anchor=int(m["anchor"]), cursor=int(m["cursor"]),
                            num_frames=m["num_frames"], object_ids=tuple(m["object_ids"]),
                            geometry=geometry, config=MemoryConfig(**m["config"]), model=m["model"], core=core,
                            weights=str(m.get("weights", "")))
    except (KeyError, TypeError, ValueError) as exc:
        raise StateError(f"session state header is incomplete: {exc}") from None


def unpack(data: bytes, magic: bytes, versions: tuple[int, ...] = (VERSION,)) -> tuple[dict[str, Any], bytes]:
    """(header, blob) of a record, its magic, version (one of ``versions``), length and CRC checked."""
    if len(data) < len(magic) + 6 or not data.startswith(magic):
        raise StateError("not a serialised session state (bad magic)")
    version, hlen = struct.unpack_from("<HI", data, len(magic))
    if version not in versions:
        raise StateError(f"session state version {version} is not supported "
                         f"(this build reads {', '.join(map(str, versions))})")
    start = len(magic) + 6
    try:
        header = json.loads(data[start:start + hlen])
    except ValueError:
        raise StateError("session state header is not valid JSON") from None
    blob = data[start + hlen:]
    if len(blob) != header.get("blob_bytes") or zlib.crc32(blob) != header.get("crc32"):
        raise StateError("session state data is truncated or corrupt (length or CRC mismatch)")
    return header, blob


def tensor(entry: dict[str, Any], blob: bytes, device: torch.device | str) -> torch.Tensor:
    dtype = entry.get("dtype")
    if dtype not in _DTYPES:
        raise StateError(f"tensor {entry.get('name')!r} has unsupported dtype {dtype!r}")
    shape, off, n = tuple(entry["shape"]), int(entry["offset"]), int(entry["nbytes"])
    if n != int(np.prod(shape)) * np.dtype(dtype).itemsize or off < 0 or off + n > len(blob):
        raise StateError(f"tensor {entry['name']!r}: shape {list(shape)} does not match its {n} bytes")
    arr = np.frombuffer(blob, dtype=dtype, count=int(np.prod(shape)), offset=off).reshape(shape)
    return torch.from_numpy(arr.astype(np.float32)).to(device)


def _presence(tensors: dict[str, torch.Tensor]) -> Presence | None:
    peak, ended = tensors.get("presence.peak"), tensors.get("presence.ended")
    return None if peak is None or ended is None else Presence(peak.cpu(), ended.cpu())


def _grey(t: torch.Tensor | None) -> torch.Tensor | None:
    """The stored grey frame (float, exact integers) back to uint8 on the CPU, where flow is computed."""
    return None if t is None else t.round().clamp(0, 255).to("cpu", torch.uint8)


def _store(m: dict[str, Any], name: str, tensors: dict[str, torch.Tensor]) -> KVStore:
    groups = tuple(tuple(int(o) for o in g) for g in m[f"{name}_groups"])
    values = tuple(tensors[f"{name}.values.{gi}"] for gi in range(len(groups)))
    fields = {f: tensors.get(f"{name}.{f}") for f in _STORE_FIELDS}
    return KVStore(count_usage=bool(m[f"{name}_count_usage"]), values=values, groups=groups, key=fields["key"],
                   shrinkage=fields["shrinkage"], selection=fields["selection"], use_count=fields["use_count"],
                   life_count=fields["life_count"])

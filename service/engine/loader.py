"""Turn a model repository entry into runnable stages on a chosen backend."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from service.engine.adaptation import Adapter
from service.engine.backends import BACKENDS
from service.engine.backends.base import Stages
from service.engine.backends.torch_backend import TorchStages
from service.engine.precision import AUTO, Choice, candidates, choose, this_host
from service.engine.precision import resolve as resolve_precision
from service.engine.propagate import Propagator
from service.engine.repo import ModelEntry, ModelRepo
from service.errors import BackendUnavailable

if TYPE_CHECKING:
    from service.engine.nn.network import ImosNet

log = logging.getLogger("imos.engine")


@dataclass(frozen=True)
class Engine:
    """A loaded model: its repository entry and the stages that run it."""

    entry: ModelEntry
    stages: Stages
    precision: str = "fp32"  # what the stages run in (``auto`` resolved)
    adapter: Adapter | None = None  # per-sequence adaptation (adapt_steps), when the weights allow it
    precision_reason: str = "as configured"

    @property
    def model_id(self) -> str:
        return f"{self.entry.name}:{self.entry.version}"

    def propagator(self, overrides: Mapping[str, str | int | bool] | None = None) -> Propagator:
        """A Propagator with the model's memory settings, plus overrides (XMem names)."""
        cfg = self.entry.memory.with_overrides(overrides or {})
        return Propagator(self.stages, cfg, self.model_id, self.entry.spec.max_objects, self.adapter)


def load_engine(repo_root: Path, name: str, backend: str = "torch", device: str = "cpu",
                precision: str = "fp32", threads: int | None = None, compile: bool = False,
                max_batch: int = 1) -> Engine:
    """Load a model on torch, onnxruntime (exporting ONNX on first use) or TensorRT.

    precision: fp32; bf16 (torch, CPU or CUDA), fp16 (torch on CUDA, tensorrt); int8 (onnx: graphs quantised
    on first use, see onnx_quantize).
    compile: torch backend only, wrap the stages in torch.compile (CUDA graphs on CUDA); opt-in,
    as the first frames of every new shape wait for the compiler.
    max_batch: the largest batch a dynamic batcher will send (TensorRT engines are built for it).
    precision ``auto``: the fastest validated precision of this backend on this host (engine.precision says which).
    """
    choice = auto_precision(repo_root, name, backend, device, threads) if precision == AUTO else \
        resolve_precision(backend, device, precision)
    if precision == AUTO:
        log.info("precision auto", extra={"backend": backend, "precision": choice.precision, "reason": choice.reason})
    engine = _load(repo_root, name, backend, device, choice.precision, threads, compile, max_batch)
    return dataclasses.replace(engine, precision=choice.precision, precision_reason=choice.reason,
                               adapter=make_adapter(repo_root, engine, choice.precision))


def auto_precision(repo_root: Path, name: str, backend: str, device: str, threads: int | None) -> Choice:
    """What ``auto`` is on this host: measured (engine.precision_probe) and cached per model version,
    backend, device, CPU and runtime versions; the GPU default where there is nothing to measure."""
    from service.engine import precision_probe as probe

    host = this_host()
    options = candidates(backend, device, host)
    if not options:
        return choose(backend, device, host)
    entry = ModelRepo(repo_root).entry(name)
    key = cache_key(entry, backend, device, threads)
    path = entry.build_dir / probe.CACHE_NAME
    found = probe.cached(path, key)
    if found is not None:
        return Choice(found.precision, f"{found.reason} (cached)")

    def runner(precision: str) -> Callable[[list[np.ndarray], np.ndarray], list[np.ndarray]]:
        prop = _load(repo_root, name, backend, device, precision, threads, False, 1).propagator({"size": -1})
        return lambda frames, mask: [r.labels() for r in prop.run(frames, mask, 0, "forward")]

    choice = probe.measure(options, runner)
    try:
        probe.remember(path, key, choice)
    except OSError as exc:  # a read-only model repository: measure again next start
        log.warning("precision auto: cannot cache the choice", extra={"path": str(path), "error": str(exc)})
    return choice


def cache_key(entry: ModelEntry, backend: str, device: str, threads: int | None) -> str:
    import torch

    from service.engine.host import cpu_info

    try:
        import onnxruntime

        ort = onnxruntime.__version__
    except ImportError:
        ort = "-"
    cpu = cpu_info()
    return (f"{entry.name}:{entry.version}|{backend}|{device}|{cpu.model or 'cpu'}|{len(cpu.flags)} flags|"
            f"threads {threads or torch.get_num_threads()}|torch {torch.__version__}|ort {ort}")


def make_adapter(repo_root: Path, engine: Engine, precision: str) -> Adapter:
    """Adapted passes run on torch on the engine's device, in the engine's precision where torch has it;
    the base weights are read from the repository on the first adaptation only."""
    entry = engine.entry
    torch_precision = precision if precision in ("fp32", "bf16", "fp16") else "fp32"
    torch_device = str(engine.stages.device)
    return Adapter(engine.model_id, lambda: ModelRepo(repo_root).load_network(entry), engine.stages.device,
                   lambda net: TorchStages(net, device=torch_device, precision=torch_precision))


def _load(repo_root: Path, name: str, backend: str, device: str, precision: str, threads: int | None,
          compile: bool, max_batch: int) -> Engine:
    repo = ModelRepo(repo_root)
    entry = repo.entry(name)
    if backend not in BACKENDS:
        raise BackendUnavailable(f"unknown backend {backend!r}; use one of {', '.join(BACKENDS)}")
    if backend != "onnx" and precision == "int8":
        raise BackendUnavailable(f"int8 runs on the onnx backend only, not {backend!r}")
    net = repo.load_network(entry)
    if backend == "torch":
        return Engine(entry, TorchStages(net, device=device, precision=precision, compile=compile))
    if compile:
        raise BackendUnavailable(f"compile applies to the torch backend only, not {backend!r}")
    if backend == "onnx" and precision not in ("fp32", "int8"):
        # ORT's CPU provider has no bf16/fp16 convolutions: a converted graph runs fp32 behind casts.
        raise BackendUnavailable(f"the onnx backend runs fp32 or int8, not {precision}; use the torch backend "
                                 "for bf16 on CPU or tensorrt for fp16 on GPU")
    onnx_dir = ensure_onnx(entry, net)
    if backend == "onnx":
        from service.engine.backends.onnx_backend import OnnxStages

        if precision == "int8":
            from service.engine.backends.onnx_quantize import ensure_int8

            onnx_dir = ensure_int8(net, entry.memory, onnx_dir, entry.build_dir / "onnx-int8")
        return Engine(entry, OnnxStages(onnx_dir, entry.spec.hidden_dim, threads=threads))
    from service.engine.backends.tensorrt_backend import ShapeProfile, TensorRTStages

    return Engine(entry, TensorRTStages(onnx_dir, entry.spec.hidden_dim, device=device if device != "cpu" else "cuda",
                                        cache_dir=entry.build_dir / "tensorrt",
                                        profile=ShapeProfile().with_max_batch(max_batch)))


def ensure_onnx(entry: ModelEntry, net: ImosNet) -> Path:
    """Export the stages to ONNX under the entry's build folder unless a current export exists."""
    from service.engine.backends.onnx_export import export_is_current, export_onnx

    out = entry.build_dir / "onnx"
    if not export_is_current(net, out):
        export_onnx(net, out)
    return out

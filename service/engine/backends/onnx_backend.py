"""ONNX Runtime backend: runs the three exported graphs (see onnx_export) on CPU.

Tensors cross the boundary as float32 CPU torch tensors. Inputs are handed to
onnxruntime as numpy views of the torch storage and outputs are wrapped with
``torch.from_numpy``, so neither direction copies when the input is already a
contiguous float32 CPU tensor.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from service.engine.backends.base import KeyFeatures
from service.engine.backends.onnx_export import STAGE_IO
from service.errors import BackendUnavailable, ModelError


def _import_ort() -> Any:
    try:
        import onnxruntime
    except ImportError as exc:
        raise BackendUnavailable("the onnxruntime backend needs the onnxruntime package "
                                 f"(pip install onnxruntime): {exc}") from exc
    return onnxruntime


def physical_cores() -> int:
    """Physical cores among the CPUs this process may run on (hyperthread siblings count once).

    One convolution thread per physical core: a sibling thread shares the core's FMA
    units and only adds synchronisation. Falls back to the CPU count where the
    topology is not readable (non-Linux).
    """
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1
    cores = set()
    for cpu in cpus:
        topo = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology")
        try:
            cores.add(((topo / "physical_package_id").read_text().strip(), (topo / "core_id").read_text().strip()))
        except OSError:
            cores.add(("cpu", str(cpu)))
    return max(1, len(cores))


def _session_options(ort: Any, threads: int | None, spinning: bool = False) -> Any:
    """Options for latency-bound, one-request-at-a-time inference of a single graph.

    The fp32 graphs are convolution-bound (about 86 % of the time in Conv/FusedConv on
    imos-lite at 480p), and ORT's x86 CPU provider has no bf16 or fp16 convolution, so
    these options, not the precision, are what can be tuned; docs/benchmarks.md has the profile.
    Creating the sessions takes about 0.1 s, so an optimised model is not saved to disk.
    """
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads if threads is not None else physical_cores()
    # The graphs are chains of convolutions: nothing to run in parallel between operators.
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Frame after frame has the same shapes, so the arena and memory patterns are reused.
    opts.enable_cpu_mem_arena = True
    opts.enable_mem_pattern = True
    if not spinning:
        # Each of the three sessions has its own intra-op pool; idle workers that spin waiting for
        # work take the cores from the other sessions' workers and from torch's memory reader. On
        # this 2-core machine spinning off took imos-lite from 7.7 to 17.5 frames/s at 288 px
        # (4.4 -> 7.0 at 480 px); docs/benchmarks.md has the runs.
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return opts


def _to_numpy(t: torch.Tensor) -> Any:
    """A float32 C-contiguous CPU numpy view of ``t`` (a copy only when one is unavoidable)."""
    return t.detach().to("cpu", torch.float32).contiguous().numpy()


class OnnxStages:
    """Stages on onnxruntime InferenceSessions over ``model_dir``/{key,value,segment}.onnx.

    ``threads``: intra-op threads (default: the physical cores this process may use). ``providers``: onnxruntime
    execution providers (default CPU); with any provider, tensors in and out stay on CPU.
    """

    name = "onnxruntime"

    def __init__(self, model_dir: Path, hidden_dim: int, threads: int | None = None,
                 providers: list[str] | None = None, spinning: bool = False) -> None:
        ort = _import_ort()
        providers = providers or ["CPUExecutionProvider"]
        missing = [p for p in providers if p not in ort.get_available_providers()]
        if missing:
            raise BackendUnavailable(f"onnxruntime here lacks execution provider(s) {missing}; "
                                     f"available: {ort.get_available_providers()}")
        self.device = torch.device("cpu")
        self.hidden_dim = hidden_dim
        opts = _session_options(ort, threads, spinning)
        self._sessions = {stage: self._open(ort, Path(model_dir) / f"{stage}.onnx", opts, providers)
                          for stage in STAGE_IO}
        self._check_hidden_dim()

    @staticmethod
    def _open(ort: Any, path: Path, opts: Any, providers: list[str]) -> Any:
        if not path.is_file():
            raise ModelError(f"missing ONNX graph {path}; export the model first")
        try:
            return ort.InferenceSession(str(path), sess_options=opts, providers=providers)
        except Exception as exc:  # onnxruntime raises its own, unexported exception types
            raise ModelError(f"onnxruntime cannot load {path}: {exc}") from exc

    def _check_hidden_dim(self) -> None:
        """The value graph's ``hidden`` input [B, K, Ch, h, w] must have Ch == hidden_dim."""
        for arg in self._sessions["value"].get_inputs():
            if arg.name == "hidden" and arg.shape[2] != self.hidden_dim:
                raise ModelError(f"ONNX graphs have hidden_dim {arg.shape[2]}, "
                                 f"but hidden_dim {self.hidden_dim} was requested")

    def _run(self, stage: str, *args: torch.Tensor) -> list[torch.Tensor]:
        """Run one graph; args in the stage's input order, outputs in its output order."""
        inputs, outputs = STAGE_IO[stage]
        feeds = {name: _to_numpy(t) for name, t in zip(inputs, args, strict=True)}
        try:
            results = self._sessions[stage].run(list(outputs), feeds)
        except Exception as exc:  # shape mismatches surface as onnxruntime runtime errors
            raise ModelError(f"onnxruntime failed in the {stage} stage: {exc}") from exc
        return [torch.from_numpy(r) for r in results]

    def encode_key(self, image: torch.Tensor) -> KeyFeatures:
        """image [B, 3, H, W] -> KeyFeatures (key, shrinkage, selection at H/16; f16, f8, f4)."""
        return KeyFeatures(*self._run("key", image))

    def encode_value(self, image: torch.Tensor, f16: torch.Tensor, hidden: torch.Tensor,
                     masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """image [B, 3, H, W], f16 [B, C16, h, w], hidden [B, K, Ch, h, w], masks [B, K, H, W]
        -> value [B, K, Cv, h, w], deep-updated hidden [B, K, Ch, h, w]."""
        value, new_hidden = self._run("value", image, f16, hidden, masks)
        return value, new_hidden

    def segment(self, feats: KeyFeatures, readout: torch.Tensor,
                hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """readout [B, K, Cv, h, w], hidden [B, K, Ch, h, w] -> logits [B, K, H, W], hidden'."""
        logits, new_hidden = self._run("segment", feats.f16, feats.f8, feats.f4, readout, hidden)
        return logits, new_hidden

"""int8 versions of the exported graphs for ONNX Runtime on CPU (``precision="int8"``).

Static post-training quantisation in QDQ form of the convolutions (the rest of each graph stays
float): weights int8 per output channel, activations uint8 with ranges calibrated on clips the
project generates itself (moving textured shapes and drifting cell fields, service.training), so
no user or licensed data is needed and the result is a pure function of the fp32 graphs and the plan.
The calibration inputs of each stage are recorded while the fp32 torch stages propagate those
clips, so the value and decoder graphs see the hidden states and memory readouts they meet in use.

Integer convolutions need VNNI (AVX-512 VNNI, AVX-VNNI or AMX) to run without the u8 x s8
products saturating their 16-bit intermediate sums; on CPUs without it the weights use 7 bits
(``reduce_range``), as ONNX Runtime's quantisation guide advises. The record (quantize.json)
names the source graphs' hashes, the plan and that choice, so a graph quantised on another
kind of CPU or from other weights is redone.

Outputs differ from fp32 by quantisation error (not the 1e-3 of the fp32 parity tests); what
that does to segmentation quality is measured on dev (docs/benchmarks.md, "int8").
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from service.engine.backends.base import KeyFeatures
from service.engine.backends.onnx_export import STAGE_IO, read_export_record, write_record
from service.engine.backends.torch_backend import TorchStages
from service.engine.hashing import file_sha256
from service.engine.host import cpu_info
from service.engine.nn.network import ImosNet
from service.engine.propagate import Propagator
from service.engine.spec import MemoryConfig
from service.errors import BackendUnavailable, ModelError

QUANT_FORMAT = 2  # 2: convolutions only
# Only convolutions: quantising the adds, resizes and activations between them as well left ORT
# dequantising and requantising around every 5-D reshape of the decoder (126 DequantizeLinear per call,
# 31 % of its time); convolutions alone ran the three graphs 15-20 % faster at the same dev J&F.
QUANTISED_OPS = ("Conv",)
QUANT_RECORD = "quantize.json"
_VNNI_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")
_MAX_CROP = 288

Samples = dict[str, list[dict[str, np.ndarray]]]


@dataclass(frozen=True)
class CalibrationPlan:
    """Which generated clips calibrate the activation ranges.

    clips: how many clips (alternating moving shapes and cell fields); frames: frames per clip;
    crop: clip side in pixels (None: the model's inference size, at most 288); max_objects: objects per clip.
    """

    clips: int = 6
    frames: int = 8
    crop: int | None = None
    max_objects: int = 3
    seed: int = 0


def cpu_has_vnni() -> bool:
    """True when /proc/cpuinfo lists an 8-bit dot-product extension (False where unreadable)."""
    return any(flag in cpu_info().flags for flag in _VNNI_FLAGS)


class _RecordingStages:
    """Stages that run ``inner`` and keep every call's inputs as float32 numpy arrays."""

    def __init__(self, inner: TorchStages) -> None:
        self.inner = inner
        self.name, self.device, self.hidden_dim = inner.name, inner.device, inner.hidden_dim
        self.samples: Samples = {stage: [] for stage in STAGE_IO}

    def _keep(self, stage: str, *tensors: torch.Tensor) -> None:
        names = STAGE_IO[stage][0]
        self.samples[stage].append({n: t.detach().float().cpu().numpy().copy() for n, t in zip(names, tensors)})

    def encode_key(self, image: torch.Tensor) -> KeyFeatures:
        self._keep("key", image)
        return self.inner.encode_key(image)

    def encode_value(self, image: torch.Tensor, f16: torch.Tensor, hidden: torch.Tensor,
                     masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self._keep("value", image, f16, hidden, masks)
        return self.inner.encode_value(image, f16, hidden, masks)

    def segment(self, feats: KeyFeatures, readout: torch.Tensor,
                hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self._keep("segment", feats.f16, feats.f8, feats.f4, readout, hidden)
        return self.inner.segment(feats, readout, hidden)


def calibration_samples(net: ImosNet, memory: MemoryConfig, plan: CalibrationPlan) -> Samples:
    """Each stage's inputs while fp32 torch stages propagate the plan's generated clips forward."""
    from service.training.config import AugmentConfig
    from service.training.synthetic import synthetic_clip
    from service.training.tissue import tissue_clip

    recorder = _RecordingStages(TorchStages(net))
    # The calibrator holds every intermediate tensor of every recorded input until the end (its
    # CalibMaxIntermediateOutputs drops data in onnxruntime 1.32), so clips are at most 288 px: XMem's
    # architecture peaked at 3.6 GB calibrating at 480 px. Activation ranges do not depend on frame size.
    crop = plan.crop or min(memory.size if memory.size > 0 else _MAX_CROP, _MAX_CROP)
    # Frames at the clips' own size: the model's size setting (or its size rule) would resize them again.
    run_at = memory.with_overrides({"size": crop, "max_upscale": 0, "size_rule": ""})
    propagator = Propagator(recorder, run_at, "calibration", net.spec.max_objects)
    rng, made = np.random.default_rng(plan.seed), 0
    objects = max(1, min(plan.max_objects, net.spec.max_objects))  # single-object imports take one
    while made < plan.clips:
        make = tissue_clip if made % 2 else synthetic_clip
        clip = make(plan.frames, crop, AugmentConfig(), objects, rng)
        if clip is None:  # no object big enough on frame 0: draw again
            continue
        for _ in propagator.run(list(clip.frames), clip.labels[0], 0, "forward"):
            pass
        made += 1
    return recorder.samples


class _Reader:
    """onnxruntime's CalibrationDataReader protocol over one stage's recorded inputs."""

    def __init__(self, feeds: list[dict[str, np.ndarray]]) -> None:
        self._it = iter(feeds)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._it, None)


class _QuietQuantiser(logging.Filter):
    """Drops the quantiser's advice to pre-process the model (shape inference is already done)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "pre-process" not in record.getMessage()


def quantize_graphs(fp32_dir: Path, out_dir: Path, samples: Samples, reduce_range: bool) -> dict[str, Path]:
    """QDQ-quantise key/value/segment.onnx from ``fp32_dir`` into the existing ``out_dir``; {stage: path}."""
    try:
        from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    except ImportError as exc:
        raise BackendUnavailable(f"int8 needs onnxruntime's quantization tools: {exc}") from exc
    quiet, root = _QuietQuantiser(), logging.getLogger()
    root.addFilter(quiet)
    paths: dict[str, Path] = {}
    try:
        for stage in STAGE_IO:
            if not samples.get(stage):
                raise ModelError(f"no calibration inputs were recorded for the {stage} stage")
            path = out_dir / f"{stage}.onnx"
            try:
                quantize_static(str(fp32_dir / f"{stage}.onnx"), str(path), _Reader(samples[stage]),
                                quant_format=QuantFormat.QDQ, per_channel=True, reduce_range=reduce_range,
                                activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                                calibrate_method=CalibrationMethod.MinMax,
                                op_types_to_quantize=list(QUANTISED_OPS))
            except (RuntimeError, ValueError, KeyError) as exc:
                raise ModelError(f"int8 quantisation of the {stage} graph failed: {exc}") from exc
            paths[stage] = path
    finally:
        root.removeFilter(quiet)
    return paths


def _expected_record(fp32_dir: Path, plan: CalibrationPlan, reduce_range: bool) -> dict[str, Any]:
    export = read_export_record(fp32_dir) or {}
    sources = {stage: info.get("sha256") for stage, info in export.get("graphs", {}).items()}
    return {"format": QUANT_FORMAT, "source_graphs": sources, "plan": asdict(plan), "reduce_range": reduce_range}


def int8_is_current(fp32_dir: Path, out_dir: Path, plan: CalibrationPlan, reduce_range: bool) -> bool:
    """True when ``out_dir`` holds int8 graphs made from these fp32 graphs, plan and CPU kind."""
    try:
        record = json.loads((out_dir / QUANT_RECORD).read_text())
    except (OSError, ValueError):
        return False
    if not isinstance(record, dict):
        return False
    wanted = _expected_record(fp32_dir, plan, reduce_range)
    if any(record.get(k) != v for k, v in wanted.items()):
        return False
    graphs = record.get("graphs", {})
    return all((out_dir / f"{s}.onnx").is_file() and (out_dir / f"{s}.onnx").stat().st_size == graphs.get(s)
               for s in STAGE_IO)


def ensure_int8(net: ImosNet, memory: MemoryConfig, fp32_dir: Path, out_dir: Path,
                plan: CalibrationPlan | None = None) -> Path:
    """The int8 graphs for the fp32 export in ``fp32_dir``, calibrating and quantising when stale.

    Takes about half a minute for imos-lite on two cores (most of it running the clips).
    """
    plan = plan or CalibrationPlan()
    reduce_range = not cpu_has_vnni()
    if int8_is_current(fp32_dir, out_dir, plan, reduce_range):
        return out_dir
    logging.getLogger(__name__).info("quantising %s to int8 (one-time calibration on %d generated clips%s)",
                                     fp32_dir, plan.clips, ", 7-bit weights: no VNNI" if reduce_range else "")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / QUANT_RECORD).unlink(missing_ok=True)  # an interrupted run must not look current
    except OSError as exc:
        raise ModelError(f"cannot write the int8 graphs under {out_dir}: {exc}; make the model repository "
                         "writable or point its build folders at a cache (ENGINE_CACHE_DIR in the images)") from exc
    was_training = net.training
    try:
        net.eval()
        samples = calibration_samples(net, memory, plan)
    finally:
        net.train(was_training)
    paths = quantize_graphs(fp32_dir, out_dir, samples, reduce_range)
    record = {**_expected_record(fp32_dir, plan, reduce_range),
              "graphs": {s: p.stat().st_size for s, p in paths.items()},
              "sha256": {s: file_sha256(p) for s, p in paths.items()},
              "calibration_calls": {s: len(v) for s, v in samples.items()}}
    write_record(out_dir / QUANT_RECORD, record)
    return out_dir

"""Export an ImosNet as three ONNX graphs (key, value, segment) plus an export record.

Each stage becomes its own graph with no mode flags. Batch (B), object count (K),
height (H) and width (W) are dynamic; H and W must be multiples of 16 at run time.
Tensor names follow the ``Stages`` protocol's argument names; an output that
shares a name with an input (``hidden``) is called ``hidden_out``.

``export.json`` next to the graphs records the opset, the torch/onnx versions,
the sha256 of the weights and of each graph file, so that a stale export (weights
changed since) is detected by :func:`export_is_current` and downstream caches
(TensorRT engines) can key on the graphs' hashes.

The TorchScript-based exporter (``dynamo=False`` with ``dynamic_axes``) is used on
purpose: the stages are plain convolution graphs whose only shape logic is
``view``/``expand`` on traced sizes, which it records as Shape ops, so one trace
serves every B, K, H, W; the torch.export-based exporter needs the extra
``onnxscript`` package and symbolic-shape constraints for the /16 relations.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from service.engine.hashing import file_sha256
from service.engine.nn.network import ImosNet, KeyStage, SegmentStage, ValueStage
from service.errors import ModelError

EXPORT_FORMAT = 1
RECORD_NAME = "export.json"

# stage -> (input names, output names); order is the stage's forward signature / return order.
STAGE_IO: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "key": (("image",), ("key", "shrinkage", "selection", "f16", "f8", "f4")),
    "value": (("image", "f16", "hidden", "masks"), ("value", "hidden_out")),
    "segment": (("f16", "f8", "f4", "readout", "hidden"), ("logits", "hidden_out")),
}

_IMAGE = {0: "batch", 2: "height", 3: "width"}
_STRIDE16 = {0: "batch", 2: "height/16", 3: "width/16"}
_GROUP16 = {0: "batch", 1: "objects", 3: "height/16", 4: "width/16"}
_GROUP_FULL = {0: "batch", 1: "objects", 2: "height", 3: "width"}

# tensor name -> {axis: symbolic dim}. Symbols name how an axis derives from
# (batch, objects, height, width), which the TensorRT profile builder relies on.
TENSOR_AXES: dict[str, dict[int, str]] = {
    "image": _IMAGE, "masks": _GROUP_FULL, "logits": _GROUP_FULL,
    "key": _STRIDE16, "shrinkage": _STRIDE16, "selection": _STRIDE16, "f16": _STRIDE16,
    "f8": {0: "batch", 2: "height/8", 3: "width/8"},
    "f4": {0: "batch", 2: "height/4", 3: "width/4"},
    "hidden": _GROUP16, "hidden_out": _GROUP16, "readout": _GROUP16, "value": _GROUP16,
}

# Tracing size: B != K and H != W so that no two dynamic axes are confused,
# and none is 1 so that nothing is specialised as a broadcast.
_TRACE_B, _TRACE_K, _TRACE_H, _TRACE_W = 2, 3, 64, 96


def weights_sha256(net: nn.Module) -> str:
    """sha256 over the state_dict in sorted key order (name, dtype, shape and raw bytes)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(net.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        # A byte view hashes every dtype (bf16 included) without a numeric conversion.
        digest.update(t.reshape(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


def _sample_inputs(net: ImosNet) -> dict[str, tuple[torch.Tensor, ...]]:
    """Example inputs for each stage at the tracing size (real key features, random rest)."""
    spec = net.spec
    b, k, h, w = _TRACE_B, _TRACE_K, _TRACE_H, _TRACE_W
    device = next(net.parameters()).device
    gen = torch.Generator().manual_seed(0)
    image = torch.randn(b, 3, h, w, generator=gen).to(device)
    with torch.no_grad():
        _, _, _, f16, f8, f4 = net.encode_key(image)
    hidden = torch.randn(b, k, spec.hidden_dim, h // 16, w // 16, generator=gen).to(device)
    masks = torch.rand(b, k, h, w, generator=gen).to(device)
    readout = torch.randn(b, k, spec.value_dim, h // 16, w // 16, generator=gen).to(device)
    return {"key": (image,), "value": (image, f16, hidden, masks),
            "segment": (f16, f8, f4, readout, hidden)}


def _stage_modules(net: ImosNet) -> dict[str, nn.Module]:
    # eval() matters: the tracer records whatever mode the wrapper is in, and a fresh
    # wrapper is in training mode (BatchNorm would use, and update, batch statistics).
    return {"key": KeyStage(net).eval(), "value": ValueStage(net).eval(),
            "segment": SegmentStage(net).eval()}


def _export_stage(module: nn.Module, args: tuple[torch.Tensor, ...], stage: str, path: Path,
                  opset: int) -> None:
    """Trace one stage to ``path`` with the TorchScript exporter and dynamic axes."""
    inputs, outputs = STAGE_IO[stage]
    axes = {name: TENSOR_AXES[name] for name in inputs + outputs}
    with warnings.catch_warnings():
        # The legacy exporter is chosen deliberately (see module docs); silence its notice.
        warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export.*")
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.onnx")
        torch.onnx.export(module, args, str(path), dynamo=False, opset_version=opset,
                          input_names=list(inputs), output_names=list(outputs),
                          dynamic_axes=axes, do_constant_folding=True)


def _finalise_graph(path: Path, stage: str, outputs: tuple[torch.Tensor, ...]) -> None:
    """Pin static output dims (the tracer leaves channel dims symbolic), then check the graph."""
    import onnx

    model = onnx.load(str(path))
    shapes = {name: tuple(t.shape) for name, t in zip(STAGE_IO[stage][1], outputs)}
    for value_info in model.graph.output:
        axes = TENSOR_AXES[value_info.name]
        for i, dim in enumerate(value_info.type.tensor_type.shape.dim):
            if i in axes:
                dim.dim_param = axes[i]
            else:
                dim.dim_value = shapes[value_info.name][i]
    onnx.save(model, str(path))
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise ModelError(f"exported {stage} graph failed the ONNX checker: {exc}") from exc


def write_record(path: Path, record: dict[str, Any]) -> None:
    """Write a JSON build record atomically, so a half-written record is never read."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(record, indent=2, sort_keys=True))
    os.replace(tmp, path)


def export_onnx(net: ImosNet, out_dir: Path, opset: int = 17) -> dict[str, Path]:
    """Write key.onnx, value.onnx, segment.onnx and export.json under ``out_dir``.

    Traces on whichever device the network is on. Returns {stage: graph path}.
    The network's weights, device and training mode are left as found.
    """
    import onnx  # imported here: the torch-only and TensorRT paths need no onnx package

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    # Drop the old record first: an interrupted export must not look current.
    (out_dir / RECORD_NAME).unlink(missing_ok=True)
    was_training = net.training
    paths: dict[str, Path] = {}
    try:
        net.eval()  # before tracing the sample features too: BatchNorm must use running stats
        modules = _stage_modules(net)
        samples = _sample_inputs(net)
        for stage, module in modules.items():
            path = out_dir / f"{stage}.onnx"
            with torch.no_grad():
                reference = module(*samples[stage])
            try:
                _export_stage(module, samples[stage], stage, path, opset)
            except (RuntimeError, TypeError, ValueError) as exc:  # OnnxExporterError is a RuntimeError
                raise ModelError(f"ONNX export of the {stage} stage failed: {exc}") from exc
            _finalise_graph(path, stage, reference)
            paths[stage] = path
    finally:
        net.train(was_training)
    write_record(out_dir / RECORD_NAME, {
        "format": EXPORT_FORMAT, "opset": opset, "torch": torch.__version__, "onnx": onnx.__version__,
        "weights_sha256": weights_sha256(net), "spec": net.spec.to_dict(),
        "graphs": {stage: {"file": p.name, "sha256": file_sha256(p), "bytes": p.stat().st_size}
                   for stage, p in paths.items()},
    })
    return paths


def read_export_record(out_dir: Path) -> dict[str, Any] | None:
    """The parsed export.json, or None when it is missing or unreadable."""
    try:
        record = json.loads((Path(out_dir) / RECORD_NAME).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def export_is_current(net: ImosNet, out_dir: Path) -> bool:
    """True when ``out_dir`` holds a complete export of exactly these weights.

    Checks the record's format and weights hash, and that every graph file exists
    with its recorded size (a cheap guard against truncated or replaced files).
    """
    record = read_export_record(out_dir)
    if record is None or record.get("format") != EXPORT_FORMAT:
        return False
    if record.get("weights_sha256") != weights_sha256(net):
        return False
    graphs = record.get("graphs", {})
    for stage in STAGE_IO:
        info = graphs.get(stage)
        path = Path(out_dir) / f"{stage}.onnx"
        if not isinstance(info, dict) or not path.is_file() or path.stat().st_size != info.get("bytes"):
            return False
    return True

"""TensorRT backend: one engine per exported ONNX graph (see onnx_export), run on CUDA.

Engines are built with the FP16 flag (TensorRT may run layers in half precision;
graph inputs and outputs stay float32) and one optimisation profile covering a
range of batch, object count and frame size. They are cached under
``<cache_root>/sm<major><minor>-trt<version>/<stage>.plan`` because a plan is only
valid for one GPU architecture and one TensorRT release; a ``<stage>.json`` beside
each plan records what it was built from, and a plan is rebuilt when the ONNX
graph's sha256, the profile or the precision changes.

``tensorrt`` is imported lazily so that this module imports everywhere.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from service.engine.backends.base import KeyFeatures
from service.engine.backends.onnx_export import STAGE_IO, TENSOR_AXES
from service.engine.hashing import file_sha256
from service.errors import BackendUnavailable, InvalidInput, ModelError


@dataclass(frozen=True)
class ProfileDims:
    """One corner of an optimisation profile; height and width are padded frame sizes."""

    batch: int
    objects: int
    height: int
    width: int


@dataclass(frozen=True)
class ShapeProfile:
    """min / opt / max shapes the engines accept (opt is what kernels are tuned for).

    The default covers one frame of up to 1088x1920 (1080p padded) with up to 16
    objects, tuned for XMem's usual 480p. Activation memory is reserved for ``max``.
    """

    min: ProfileDims = ProfileDims(1, 1, 64, 64)
    opt: ProfileDims = ProfileDims(1, 2, 480, 864)
    max: ProfileDims = ProfileDims(1, 16, 1088, 1920)

    def with_max_batch(self, batch: int) -> ShapeProfile:
        """This profile accepting batches of up to ``batch`` frames (a dynamic batcher's largest)."""
        if batch < 1:
            raise BackendUnavailable(f"bad TensorRT profile: max batch must be >= 1, got {batch}")
        return dataclasses.replace(self, max=dataclasses.replace(self.max, batch=max(batch, self.opt.batch)))

    def validate(self) -> None:
        corners = (self.min, self.opt, self.max)
        for field in ("batch", "objects", "height", "width"):
            lo, mid, hi = (getattr(c, field) for c in corners)
            if not 1 <= lo <= mid <= hi:
                raise BackendUnavailable(f"bad TensorRT profile: need 1 <= min <= opt <= max for {field}")
        if any(c.height % 16 or c.width % 16 for c in corners):
            raise BackendUnavailable("bad TensorRT profile: heights and widths must be multiples of 16")


def _dim(symbol: str, dims: ProfileDims) -> int:
    """Value of a symbolic axis from onnx_export.TENSOR_AXES, e.g. 'height/16'."""
    base, _, divisor = symbol.partition("/")
    value = int(getattr(dims, base))
    return value // int(divisor) if divisor else value


def profile_shapes(name: str, static_shape: tuple[int, ...],
                   profile: ShapeProfile) -> tuple[tuple[int, ...], ...]:
    """(min, opt, max) shapes of input ``name``, whose graph shape has -1 on dynamic axes."""
    axes = TENSOR_AXES.get(name, {})
    unknown = [i for i, d in enumerate(static_shape) if d < 0 and i not in axes]
    if unknown:
        raise ModelError(f"input {name!r} has dynamic axes {unknown} that no profile rule covers")
    return tuple(tuple(_dim(axes[i], corner) if d < 0 else d for i, d in enumerate(static_shape))
                 for corner in (profile.min, profile.opt, profile.max))


def _import_trt() -> Any:
    try:
        import tensorrt
    except (ImportError, OSError) as exc:  # OSError: wheel present but libnvinfer unloadable
        raise BackendUnavailable(f"the tensorrt backend needs the tensorrt package (>= 10) "
                                 f"and its CUDA libraries: {exc}") from exc
    if int(tensorrt.__version__.split(".")[0]) < 10:
        raise BackendUnavailable(f"tensorrt {tensorrt.__version__} is too old; need >= 10")
    return tensorrt


def _cuda_device(device: str) -> torch.device:
    if not torch.cuda.is_available():
        raise BackendUnavailable("the tensorrt backend needs a CUDA GPU, and torch sees none here")
    dev = torch.device(device)
    if dev.type != "cuda":
        raise BackendUnavailable(f"the tensorrt backend runs on CUDA devices only, not {device!r}")
    return torch.device("cuda", dev.index if dev.index is not None else torch.cuda.current_device())


def engine_dir(cache_root: Path, trt_version: str, device: torch.device) -> Path:
    """Cache folder for one GPU architecture and TensorRT release, e.g. sm90-trt10.3.0."""
    major, minor = torch.cuda.get_device_capability(device)
    return Path(cache_root) / f"sm{major}{minor}-trt{trt_version}"


def build_plan(trt: Any, logger: Any, onnx_path: Path, profile: ShapeProfile, fp16: bool) -> bytes:
    """Parse one ONNX graph and build a serialised engine with one optimisation profile."""
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # TensorRT 10 networks are always explicit-batch
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ModelError(f"TensorRT cannot parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    if fp16:
        if not hasattr(trt.BuilderFlag, "FP16"):
            raise BackendUnavailable(f"tensorrt {trt.__version__} has no FP16 builder flag; use fp16=False")
        config.set_flag(trt.BuilderFlag.FP16)
    opt_profile = builder.create_optimization_profile()
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        opt_profile.set_shape(tensor.name, *profile_shapes(tensor.name, tuple(tensor.shape), profile))
    config.add_optimization_profile(opt_profile)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise ModelError(f"TensorRT failed to build an engine from {onnx_path} (see its log above)")
    return bytes(plan)


def _torch_dtype(trt: Any, dtype: Any) -> torch.dtype:
    table = {trt.DataType.FLOAT: torch.float32, trt.DataType.HALF: torch.float16,
             trt.DataType.INT32: torch.int32, trt.DataType.INT64: torch.int64, trt.DataType.BOOL: torch.bool}
    if dtype not in table:
        raise ModelError(f"TensorRT engine uses an unsupported I/O type {dtype}")
    return table[dtype]


class TrtEngine:
    """One deserialised engine, its execution context and a private CUDA stream.

    The context holds tensor addresses and scratch memory, so calls are serialised
    with a lock and always enqueued on the same stream.
    """

    def __init__(self, trt: Any, runtime: Any, plan: bytes, io: tuple[tuple[str, ...], tuple[str, ...]],
                 device: torch.device) -> None:
        self.engine = runtime.deserialize_cuda_engine(plan)
        if self.engine is None:
            raise ModelError("TensorRT could not deserialise the engine plan")
        names = {self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)}
        self.inputs, self.outputs = io
        if names != set(self.inputs) | set(self.outputs):
            raise ModelError(f"engine tensors {sorted(names)} do not match the stage's {io}")
        self.device = device
        self.context = self.engine.create_execution_context()
        self.stream = torch.cuda.Stream(device)
        self._dtypes = {n: _torch_dtype(trt, self.engine.get_tensor_dtype(n)) for n in names}
        self._lock = threading.Lock()

    def static_dim(self, name: str, axis: int) -> int:
        """A dimension of tensor ``name`` as built into the engine (-1 if dynamic)."""
        return int(self.engine.get_tensor_shape(name)[axis])

    def _bind_input(self, name: str, t: torch.Tensor) -> torch.Tensor:
        t = t.detach().to(self.device, self._dtypes[name]).contiguous()
        if not self.context.set_input_shape(name, tuple(t.shape)):
            raise InvalidInput(f"{name} of shape {tuple(t.shape)} is outside the TensorRT engine's "
                               "optimisation profile; rebuild with a wider ShapeProfile")
        self.context.set_tensor_address(name, t.data_ptr())
        return t

    def _bind_output(self, name: str) -> torch.Tensor:
        shape = tuple(self.context.get_tensor_shape(name))
        if any(d < 0 for d in shape):
            raise ModelError(f"TensorRT could not infer the shape of output {name}: {shape}")
        out = torch.empty(shape, dtype=self._dtypes[name], device=self.device)
        self.context.set_tensor_address(name, out.data_ptr())
        return out

    def run(self, args: list[torch.Tensor]) -> list[torch.Tensor]:
        """Inputs in the stage's input order -> float32 outputs in its output order."""
        with self._lock, torch.cuda.device(self.device):
            caller = torch.cuda.current_stream(self.device)
            bound = [self._bind_input(n, t) for n, t in zip(self.inputs, args, strict=True)]
            outs = [self._bind_output(n) for n in self.outputs]
            self.stream.wait_stream(caller)  # inputs were produced on the caller's stream
            if not self.context.execute_async_v3(self.stream.cuda_stream):
                raise ModelError("TensorRT execution failed (see its log)")
            for t in bound + outs:
                # Allocated on the caller's stream but used on ours: keep the allocator
                # from handing the memory out again before the engine is done with it.
                t.record_stream(self.stream)
            caller.wait_stream(self.stream)  # results are visible to the caller's later work
        return [o.float() for o in outs]


def _write_atomic(path: Path, data: bytes) -> None:
    """Write via a temporary file so that a concurrent reader never sees half a plan."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


class TensorRTStages:
    """Stages on TensorRT engines built from ``model_dir``/{key,value,segment}.onnx.

    ``cache_dir`` is the root of the engine cache (default: ``model_dir``'s sibling
    ``tensorrt``, i.e. build/tensorrt for exports in build/onnx). Tensors in and out
    are float32 on ``device``; inputs elsewhere are moved there.
    """

    name = "tensorrt"

    def __init__(self, model_dir: Path, hidden_dim: int, device: str = "cuda",
                 cache_dir: Path | None = None, profile: ShapeProfile | None = None,
                 fp16: bool = True) -> None:
        trt = _import_trt()  # first, so a missing package is what gets reported
        self.device = _cuda_device(device)
        self.hidden_dim = hidden_dim
        self.profile = profile or ShapeProfile()
        self.profile.validate()
        self.fp16 = fp16
        model_dir = Path(model_dir)
        # The logger and runtime must outlive every engine created through them.
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        self.engine_dir = engine_dir(cache_dir or model_dir.parent / "tensorrt", trt.__version__, self.device)
        self.engine_dir.mkdir(parents=True, exist_ok=True)
        with torch.cuda.device(self.device):
            self._engines = {stage: self._load(trt, stage, model_dir / f"{stage}.onnx") for stage in STAGE_IO}
        found = self._engines["value"].static_dim("hidden", 2)
        if found != hidden_dim:
            raise ModelError(f"TensorRT engines have hidden_dim {found}, but {hidden_dim} was requested")

    def _build_record(self, onnx_path: Path, trt_version: str) -> dict[str, Any]:
        return {"onnx_sha256": file_sha256(onnx_path), "profile": dataclasses.asdict(self.profile),
                "fp16": self.fp16, "tensorrt": trt_version}

    def _load(self, trt: Any, stage: str, onnx_path: Path) -> TrtEngine:
        """The cached engine when its record matches this graph and settings, else a fresh build."""
        if not onnx_path.is_file():
            raise ModelError(f"missing ONNX graph {onnx_path}; export the model first")
        plan_path, record_path = self.engine_dir / f"{stage}.plan", self.engine_dir / f"{stage}.json"
        record = self._build_record(onnx_path, trt.__version__)
        try:
            cached = json.loads(record_path.read_text()) == record and plan_path.is_file()
        except (OSError, ValueError):
            cached = False
        if cached:
            try:
                return TrtEngine(trt, self._runtime, plan_path.read_bytes(), STAGE_IO[stage], self.device)
            except ModelError:  # e.g. a plan from another driver: rebuild below
                logging.getLogger(__name__).warning("cached TensorRT plan %s unusable; rebuilding", plan_path)
        logging.getLogger(__name__).info("building TensorRT engine for %s (can take minutes)", onnx_path)
        plan = build_plan(trt, self._logger, onnx_path, self.profile, self.fp16)
        _write_atomic(plan_path, plan)
        _write_atomic(record_path, json.dumps(record, indent=2, sort_keys=True).encode())
        return TrtEngine(trt, self._runtime, plan, STAGE_IO[stage], self.device)

    def encode_key(self, image: torch.Tensor) -> KeyFeatures:
        """image [B, 3, H, W] -> KeyFeatures (key, shrinkage, selection at H/16; f16, f8, f4)."""
        return KeyFeatures(*self._engines["key"].run([image]))

    def encode_value(self, image: torch.Tensor, f16: torch.Tensor, hidden: torch.Tensor,
                     masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """image [B, 3, H, W], f16 [B, C16, h, w], hidden [B, K, Ch, h, w], masks [B, K, H, W]
        -> value [B, K, Cv, h, w], deep-updated hidden [B, K, Ch, h, w]."""
        value, new_hidden = self._engines["value"].run([image, f16, hidden, masks])
        return value, new_hidden

    def segment(self, feats: KeyFeatures, readout: torch.Tensor,
                hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """readout [B, K, Cv, h, w], hidden [B, K, Ch, h, w] -> logits [B, K, H, W], hidden'."""
        logits, new_hidden = self._engines["segment"].run([feats.f16, feats.f8, feats.f4, readout, hidden])
        return logits, new_hidden

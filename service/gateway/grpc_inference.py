"""The Open Inference Protocol's gRPC service (``inference.GRPCInferenceService``) on the service's gRPC
port: health, metadata and ModelInfer, over the same model as the REST ``/v2`` routes.

Inputs come as ``raw_input_contents`` (what Triton's client sends) or typed ``contents``; outputs go
back in ``raw_output_contents``. Errors leave through the one error table (gRPC status and the
``imos-error-code`` trailing metadata).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from types import ModuleType
from typing import Any, TypeVar

import grpc
import numpy as np
from google.protobuf.message import Message

from service.errors import InvalidInput
from service.gateway.grpc_register import register_service
from service.gateway.grpc_server import run_unary
from service.integrations.kserve.model import EXTENSIONS, InferenceModel, is_ready, server_version
from service.integrations.kserve.tensors import DTYPES, InferRequest
from service.runtime import Runtime

SERVICE = "inference.GRPCInferenceService"
T = TypeVar("T")
# typed contents field per datatype (the protocol puts UINT8/UINT16 in uint_contents, INT8..INT32 in int_contents)
_CONTENTS = {"UINT8": "uint_contents", "UINT16": "uint_contents", "UINT32": "uint_contents",
             "INT16": "int_contents", "INT32": "int_contents", "INT64": "int64_contents",
             "FP32": "fp32_contents", "BOOL": "bool_contents"}


class InferenceServicer:
    def __init__(self, rt: Runtime, pb2: ModuleType) -> None:
        self.rt, self.pb2 = rt, pb2

    async def _unary(self, route: str, context: grpc.aio.ServicerContext, work: Callable[[str], Awaitable[T]]) -> T:
        return await run_unary(self.rt, route, context, work)

    async def ServerLive(self, request: Message, context: grpc.aio.ServicerContext) -> Message:  # noqa: N802
        return self.pb2.ServerLiveResponse(live=True)

    async def ServerReady(self, request: Message, context: grpc.aio.ServicerContext) -> Message:  # noqa: N802
        return self.pb2.ServerReadyResponse(ready=await is_ready(self.rt))

    async def ServerMetadata(self, request: Message, context: grpc.aio.ServicerContext) -> Message:  # noqa: N802
        return self.pb2.ServerMetadataResponse(name="imos-serve", version=server_version(), extensions=EXTENSIONS)

    async def ModelReady(self, request: Any, context: grpc.aio.ServicerContext) -> Message:  # noqa: N802
        async def work(_: str) -> Message:
            InferenceModel(self.rt).check(request.name, request.version)
            return self.pb2.ModelReadyResponse(ready=await is_ready(self.rt))
        return await self._unary("ModelReady", context, work)

    async def ModelMetadata(self, request: Any, context: grpc.aio.ServicerContext) -> Message:  # noqa: N802
        async def work(_: str) -> Message:
            model = InferenceModel(self.rt)
            model.check(request.name, request.version)
            meta = model.metadata()
            tensors = self.pb2.ModelMetadataResponse.TensorMetadata
            return self.pb2.ModelMetadataResponse(
                name=meta["name"], versions=meta["versions"], platform=meta["platform"],
                inputs=[tensors(**t) for t in meta["inputs"]], outputs=[tensors(**t) for t in meta["outputs"]])
        return await self._unary("ModelMetadata", context, work)

    async def ModelInfer(self, request: Any, context: grpc.aio.ServicerContext) -> Message:  # noqa: N802
        async def work(tenant: str) -> Message:
            model = InferenceModel(self.rt)
            model.check(request.model_name, request.model_version)
            req = _request(request)
            outputs = await model.infer(req, tenant)
            wanted = set(req.outputs)
            tensor = self.pb2.ModelInferResponse.InferOutputTensor
            kept = [(n, d, a) for n, d, a in outputs if not wanted or n in wanted]
            return self.pb2.ModelInferResponse(
                model_name=model.name, model_version=model.version, id=request.id,
                outputs=[tensor(name=n, datatype=d, shape=list(a.shape)) for n, d, a in kept],
                raw_output_contents=[np.ascontiguousarray(a, DTYPES[d]).tobytes() for n, d, a in kept])
        return await self._unary("ModelInfer", context, work)


def _request(request: Any) -> InferRequest:
    """The protobuf request as the protocol's neutral InferRequest (inputs as arrays)."""
    raw = list(request.raw_input_contents)
    if raw and len(raw) != len(request.inputs):
        raise InvalidInput(f"{len(raw)} raw_input_contents for {len(request.inputs)} inputs")
    inputs = {}
    for i, tensor in enumerate(request.inputs):
        inputs[tensor.name] = _array(tensor, raw[i] if raw else None)
    return InferRequest(request.id, inputs, _parameters(request.parameters),
                        {o.name: True for o in request.outputs})


def _array(tensor: Any, raw: bytes | None) -> np.ndarray:
    dtype = DTYPES.get(tensor.datatype)
    if dtype is None:
        raise InvalidInput(f"input {tensor.name}: datatype {tensor.datatype} is not one of {', '.join(DTYPES)}")
    shape = [int(d) for d in tensor.shape]
    if any(d < 0 for d in shape):
        raise InvalidInput(f"input {tensor.name}: shape {shape} has a negative dimension")
    count = int(np.prod(shape)) if shape else 1
    if raw is not None:
        if len(raw) != count * dtype.itemsize:
            raise InvalidInput(f"input {tensor.name}: {len(raw)} raw bytes do not hold {shape} {tensor.datatype}")
        return np.frombuffer(raw, dtype).reshape(shape)
    values = list(getattr(tensor.contents, _CONTENTS.get(tensor.datatype, "bytes_contents")))
    if len(values) != count:
        raise InvalidInput(f"input {tensor.name}: {len(values)} values do not fill the shape {shape}")
    return np.asarray(values).astype(dtype).reshape(shape)


def _parameters(params: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in params.items():
        kind = value.WhichOneof("parameter_choice")
        out[key] = getattr(value, kind) if kind else None
    return out


def add_inference_service(rt: Runtime, server: grpc.aio.Server, pb2: ModuleType) -> None:
    register_service(InferenceServicer(rt, pb2), server, pb2, "GRPCInferenceService", SERVICE)

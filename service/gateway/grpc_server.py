"""The imos.v1.Propagation service on grpc.aio, with standard health and reflection.

Handlers validate and convert messages, then call SessionService, the use cases
REST calls too; workers do the computing and publish events the streams relay.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from types import ModuleType
from typing import TypeVar

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from service.auth import KeyRing, bearer
from service.errors import ImosError, InvalidInput, failure_error
from service.gateway.decoding import check_frame_count, decode_volume, read_options
from service.gateway.grpc_convert import (
    EventConverter,
    Message,
    direction_name,
    image_from_proto,
    mask_from_proto,
    session_options,
    session_to_proto,
)
from service.gateway.grpc_errors import ExplicitStatus, abort_with, code_for
from service.gateway.grpc_register import register
from service.gateway.grpc_track import TrackCall
from service.gateway.protos import load_protos
from service.io.outputs import FORMATS
from service.runtime import Runtime
from service.sessions.model import RunSpec
from service.sessions.service import with_deadline
from service.sessions.source import pack_source
from service.settings import Settings

SERVICE_NAME = "imos.v1.Propagation"
T = TypeVar("T")


def resolve_tenant(context: grpc.aio.ServicerContext, keys: KeyRing) -> str:
    """The caller's tenant from 'authorization: Bearer <key>' (or 'x-api-key') call metadata."""
    metadata = {k.lower(): v for k, v in (context.invocation_metadata() or ())}
    auth = metadata.get("authorization")  # str: only '-bin' metadata keys carry bytes
    key = bearer(auth if isinstance(auth, str) else None) or metadata.get("x-api-key")
    return keys.tenant_for(key if isinstance(key, str) else None)


async def run_unary(rt: Runtime, route: str, context: grpc.aio.ServicerContext,
                    work: Callable[[str], Awaitable[T]]) -> T:
    """Run one unary handler for the caller's tenant: map domain errors to statuses, count the request."""
    started, code = time.perf_counter(), grpc.StatusCode.OK
    try:
        return await work(resolve_tenant(context, rt.keys))
    except asyncio.CancelledError:
        code = grpc.StatusCode.CANCELLED
        raise
    except Exception as exc:  # every failure leaves as a status, never as a crash
        code = code_for(exc)
        await abort_with(context, exc)
        raise  # abort_with raises already
    finally:
        observe(rt, route, code, started)


def observe(rt: Runtime, route: str, code: grpc.StatusCode, started: float) -> None:
    """Count one gRPC call and its latency."""
    rt.metrics.requests.labels("grpc", route, code.name).inc()
    rt.metrics.latency.labels("grpc", route).observe(time.perf_counter() - started)


class PropagationServicer:
    """Implements the Propagation methods (registered by name on the server)."""

    def __init__(self, runtime: Runtime, pb2: ModuleType) -> None:
        self.rt, self.pb2 = runtime, pb2
        self.sessions = runtime.sessions
        self.served = (runtime.model.name, runtime.model.version)

    # ------------------------------------------------------------------ plumbing

    async def _unary(self, route: str, context: grpc.aio.ServicerContext,
                     work: Callable[[str], Awaitable[T]]) -> T:
        return await run_unary(self.rt, route, context, work)

    async def _stream(self, route: str, context: grpc.aio.ServicerContext,
                      items: Callable[[str], AsyncIterator[Message]]) -> AsyncIterator[Message]:
        """The streaming counterpart of _unary."""
        started, code = time.perf_counter(), grpc.StatusCode.OK
        try:
            async for item in items(resolve_tenant(context, self.rt.keys)):
                yield item
        except asyncio.CancelledError:
            code = grpc.StatusCode.CANCELLED
            raise
        except Exception as exc:
            code = code_for(exc)
            await abort_with(context, exc)
        finally:
            observe(self.rt, route, code, started)

    # ------------------------------------------------------------------ handlers

    # grpc.aio drives streaming handlers that are async generator functions, hence the re-yield
    async def Track(self, requests: AsyncIterator[Message],
                    context: grpc.aio.ServicerContext) -> AsyncIterator[Message]:
        def track(tenant: str) -> AsyncIterator[Message]:
            call = TrackCall(self.pb2, self.sessions, tenant, self.served, self.rt.model.max_objects)
            return call.responses(requests)

        async for item in self._stream("Track", context, track):
            yield item

    async def Propagate(self, request: Message, context: grpc.aio.ServicerContext) -> AsyncIterator[Message]:
        async for item in self._stream("Propagate", context, lambda t: self._propagate(request, t)):
            yield item

    async def CreateSession(self, request: Message, context: grpc.aio.ServicerContext) -> Message:
        return await self._unary("CreateSession", context, lambda t: self._create(request, t))

    async def GetSession(self, request: Message, context: grpc.aio.ServicerContext) -> Message:
        return await self._unary("GetSession", context, lambda t: self._get(request.session_id, t))

    async def DeleteSession(self, request: Message, context: grpc.aio.ServicerContext) -> Message:
        return await self._unary("DeleteSession", context, lambda t: self._delete(request.session_id, t))

    async def GetResults(self, request: Message, context: grpc.aio.ServicerContext) -> Message:
        return await self._unary("GetResults", context, lambda t: self._results(request, t))

    # ------------------------------------------------------------------ use cases

    async def _create(self, request: Message, tenant: str) -> Message:
        settings, labels = session_options(request.options, self.served)
        # decoding many frames is CPU work: keep it off the event loop
        if request.sequence_file:
            if request.frames:
                raise InvalidInput("send frames or sequence_file, not both")
            volume = await decode_volume(self.rt.settings, request.sequence_file, request.sequence_filename or None,
                                         read_options(self.rt.settings, request.window or None))
            frames, source = volume.frames, pack_source(volume)
        else:
            source = None
            check_frame_count(self.rt.settings, len(request.frames))
            frames = await asyncio.to_thread(
                lambda: [image_from_proto(im, f"frame {i}") for i, im in enumerate(request.frames)])
        meta = await self.sessions.create(tenant, frames, settings=settings, labels=labels, source=source)
        return self.pb2.CreateSessionResponse(session_id=meta.id, num_frames=len(frames))

    async def _get(self, sid: str, tenant: str) -> Message:
        return session_to_proto(self.pb2, await self.sessions.status(sid, tenant))

    async def _results(self, request: Message, tenant: str) -> Message:
        fmt = request.format or "png-zip"
        if fmt not in FORMATS:
            raise InvalidInput(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
        enc = await self.sessions.results_file(request.session_id, tenant, fmt, request.seg_type or "binary")
        return self.pb2.GetResultsResponse(data=enc.data, media_type=enc.media_type, filename=f"masks{enc.suffix}")

    async def _delete(self, sid: str, tenant: str) -> Message:
        await self.sessions.delete(sid, tenant)
        return self.pb2.DeleteSessionResponse()

    async def _propagate(self, request: Message, tenant: str) -> AsyncIterator[Message]:
        """Store the request's annotations, start a run, relay its events until its done."""
        sid, direction = request.session_id, direction_name(self.pb2, request.direction)
        masks = [(int(a.frame), mask_from_proto(a.mask, f"the mask of frame {a.frame}"))
                 for a in request.annotations]  # all decoded before any is stored
        await self.sessions.require_worker()  # Propagate waits for its run: no worker, no wait
        for frame, mask in masks:
            await self.sessions.annotate(sid, tenant, frame, mask)
        run = await self.sessions.propagate(sid, tenant, direction, scope=request.scope or "all")
        conv = EventConverter(self.pb2, self.sessions, sid, tenant)
        events = with_deadline(self.sessions.events(sid, tenant, until_done=True), self.rt.settings.run_deadline_s)
        async for ev in events:
            if ev.run != run.id:
                _check_not_replaced(ev.kind, ev.run, run)
                continue  # history of earlier runs
            if ev.kind == "error":
                raise failure_error(ev.code, ev.message)
            converted = await conv.convert(ev)
            if converted is not None:
                yield self.pb2.PropagateResponse(**{converted[0]: converted[1]})
            if ev.kind == "done":
                return


def _check_not_replaced(kind: str, run_id: int, ours: RunSpec) -> None:
    """A newer run on the session supersedes ours: its results would be mixed in, so stop."""
    if kind == "run-started" and run_id > ours.id:
        raise ExplicitStatus(grpc.StatusCode.ABORTED,
                             f"propagation run {ours.id} was replaced by run {run_id} on this session")


async def start_grpc(runtime: Runtime, host: str, port: int) -> tuple[grpc.aio.Server, int]:
    """Start the gRPC server (Propagation, health, reflection); returns it and the bound port."""
    pb2, pb2_grpc = load_protos()
    limit = runtime.settings.max_grpc_message_bytes
    server = grpc.aio.server(options=[("grpc.max_receive_message_length", limit),
                                      ("grpc.max_send_message_length", limit)])
    register(PropagationServicer(runtime, pb2), server, pb2)
    from service.gateway.grpc_inference import SERVICE as INFERENCE
    from service.gateway.grpc_inference import add_inference_service
    from service.gateway.protos import INFERENCE as INFERENCE_PROTO
    from service.gateway.protos import default_paths

    inference_pb2, _ = load_protos(default_paths(INFERENCE_PROTO))
    add_inference_service(runtime, server, inference_pb2)
    checker = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(checker, server)
    for name in ("", SERVICE_NAME):
        await checker.set(name, health_pb2.HealthCheckResponse.SERVING)
    names = (SERVICE_NAME, INFERENCE, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
             reflection.SERVICE_NAME)
    reflection.enable_server_reflection(names, server)
    try:
        credentials = server_credentials(runtime.settings)
        address = f"{host}:{port}"
        bound = server.add_secure_port(address, credentials) if credentials else server.add_insecure_port(address)
    except RuntimeError as exc:  # grpc's way of saying the address is taken or invalid
        raise ImosError(f"cannot listen for gRPC on {host}:{port}: {exc}") from None
    await server.start()
    return server, bound


def server_credentials(settings: Settings) -> grpc.ServerCredentials | None:
    """TLS from the configured PEM files; with a client CA, clients must present a certificate (mTLS)."""
    if settings.tls_cert_file is None:
        return None
    if settings.tls_key_file is None:
        raise ImosError("IMOS_TLS_CERT_FILE needs IMOS_TLS_KEY_FILE")
    pair = (settings.tls_key_file.read_bytes(), settings.tls_cert_file.read_bytes())
    ca = settings.tls_client_ca_file.read_bytes() if settings.tls_client_ca_file else None
    return grpc.ssl_server_credentials([pair], root_certificates=ca, require_client_auth=ca is not None)

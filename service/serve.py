"""Running the roles: gateway (REST + gRPC), worker, or both in one process."""

from __future__ import annotations

import asyncio
import logging
import signal
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import uvicorn

from service.gateway.rest.app import create_app
from service.runtime import Runtime, build_runtime
from service.settings import Settings

if TYPE_CHECKING:
    import grpc

log = logging.getLogger("imos.serve")


@dataclass
class Running:
    """A started service: its runtime, bound ports and background tasks."""

    runtime: Runtime
    http_port: int | None = None
    grpc_port: int | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _http: uvicorn.Server | None = None
    _grpc: grpc.aio.Server | None = None

    async def stop(self, grace_s: float = 5.0) -> None:
        self.runtime.stop.set()
        if self._http is not None:
            self._http.should_exit = True
        if self._grpc is not None:
            await self._grpc.stop(grace_s)
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.runtime.store.close()


async def start(settings: Settings, role: str) -> Running:
    """Start the role's servers and worker in the running loop; returns once ports are bound."""
    rt = build_runtime(settings, role)
    running = Running(rt)
    if role in ("all", "gateway"):
        await _start_http(running, settings, health_only=False)
        from service.gateway.grpc_server import start_grpc

        running._grpc, running.grpc_port = await start_grpc(rt, settings.http_host, settings.grpc_port)
    if rt.worker is not None:
        if role == "worker" and settings.worker_http_port >= 0:
            # probes and /metrics for the worker, on its own port: N workers may share a host
            await _start_http(running, settings, health_only=True, port=settings.worker_http_port)
        running.tasks.append(asyncio.create_task(rt.worker.run(rt.stop)))
    log.info("started", extra={"role": role, "http_port": running.http_port, "grpc_port": running.grpc_port,
                               "model": f"{rt.model.name}:{rt.model.version}", "store": type(rt.store).__name__})
    return running


async def _start_http(running: Running, settings: Settings, health_only: bool, port: int | None = None) -> None:
    tls = settings.tls_cert_file is not None
    config = uvicorn.Config(create_app(running.runtime, health_only), host=settings.http_host,
                            port=settings.http_port if port is None else port, log_level="warning",
                            lifespan="off", timeout_graceful_shutdown=5,
                            ssl_certfile=str(settings.tls_cert_file) if tls else None,
                            ssl_keyfile=str(settings.tls_key_file) if tls else None)
    server = uvicorn.Server(config)
    running._http = server
    running.tasks.append(asyncio.create_task(server.serve()))
    while not server.started:
        if running.tasks[-1].done():
            await running.tasks[-1]  # surfaces the bind error
            raise RuntimeError("HTTP server stopped during start-up")
        await asyncio.sleep(0.02)
    sockets = [s for srv in server.servers for s in srv.sockets]
    running.http_port = int(sockets[0].getsockname()[1])


async def serve_forever(settings: Settings, role: str) -> None:
    """Run until SIGINT/SIGTERM; a worker finishes or checkpoints the frames in hand first."""
    running = await start(settings, role)
    rest = f"http://{settings.http_host}:{running.http_port}" if running.http_port is not None else "off"
    label = "probes" if role == "worker" else "REST"
    print(f"imos {role}: {label} {rest} gRPC {running.grpc_port} "
          f"model {running.runtime.model.name}:{running.runtime.model.version}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    waiters = [asyncio.create_task(stop.wait())] + running.tasks
    await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    await running.stop()

"""HTTPS for REST, TLS and mutual TLS for gRPC, from certificate files made in the test."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from service.serve import start
from service.settings import Settings
from tests.integration.certs import make_pki


def test_https_and_grpc_mtls(embedded_settings: Settings, tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    settings = embedded_settings.model_copy(update={
        "tls_cert_file": pki.server_cert, "tls_key_file": pki.server_key, "tls_client_ca_file": pki.ca})

    async def scenario() -> None:
        running = await start(settings, "all")
        try:
            ctx = ssl.create_default_context(cafile=str(pki.ca))
            async with httpx.AsyncClient(verify=ctx) as client:
                r = await client.get(f"https://127.0.0.1:{running.http_port}/healthz")
                assert r.status_code == 200
            async with httpx.AsyncClient() as plain:
                with pytest.raises(httpx.HTTPError):
                    await plain.get(f"http://127.0.0.1:{running.http_port}/healthz")
            target = f"localhost:{running.grpc_port}"
            mutual = grpc.ssl_channel_credentials(pki.ca.read_bytes(), pki.client_key.read_bytes(),
                                                  pki.client_cert.read_bytes())
            async with grpc.aio.secure_channel(target, mutual) as ch:
                reply = await health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=10)
                assert reply.status == health_pb2.HealthCheckResponse.SERVING
            server_only = grpc.ssl_channel_credentials(pki.ca.read_bytes())
            async with grpc.aio.secure_channel(target, server_only) as ch:
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    await health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=10)
                assert err.value.code() == grpc.StatusCode.UNAVAILABLE  # no client certificate: refused
        finally:
            await running.stop()

    asyncio.run(scenario())

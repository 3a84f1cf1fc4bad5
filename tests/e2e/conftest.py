"""Fixtures shared by the end-to-end tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.procs import free_port, imos_process, wait_ready


@pytest.fixture(scope="session")
def bundled_serve(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """One `imos serve` with the bundled model (embedded store, free ports) for the platform and protocol
    adapters' tests: (its REST URL, its gRPC host:port)."""
    logs = tmp_path_factory.mktemp("bundled-serve")
    http, grpc_port = free_port(), free_port()
    with imos_process(["serve", "--http-port", str(http), "--grpc-port", str(grpc_port)], {}, logs / "serve.log") \
            as proc:
        url = f"http://127.0.0.1:{http}"
        wait_ready(url, proc, logs / "serve.log", timeout_s=180)
        yield url, f"127.0.0.1:{grpc_port}"


@pytest.fixture(scope="session")
def bundled_service(bundled_serve: tuple[str, str]) -> str:
    """The REST URL of the bundled-model `imos serve`."""
    return bundled_serve[0]

"""Fixtures shared by the end-to-end tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.procs import free_port, imos_process, wait_ready


@pytest.fixture(scope="session")
def bundled_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One `imos serve` with the bundled model (embedded store, free ports) for the platform adapters' tests;
    its REST URL."""
    logs = tmp_path_factory.mktemp("bundled-serve")
    http, grpc_port = free_port(), free_port()
    with imos_process(["serve", "--http-port", str(http), "--grpc-port", str(grpc_port)], {}, logs / "serve.log") \
            as proc:
        url = f"http://127.0.0.1:{http}"
        wait_ready(url, proc, logs / "serve.log", timeout_s=180)
        yield url

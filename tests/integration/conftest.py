"""Fixtures shared by the integration tests: a real Orthanc for the PACS tests."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.integration.orthanc import OrthancServer, find_dicomweb_plugin, find_orthanc, start_orthanc


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OrthancServer]:
    """Orthanc with its DICOMweb plugin on a free loopback port; CI must have it installed."""
    if find_orthanc() is None or find_dicomweb_plugin() is None:
        reason = "Orthanc + DICOMweb plugin not installed (run scripts/install_orthanc.sh)"
        if os.environ.get("CI"):
            pytest.fail(f"{reason}; CI must install them")
        pytest.skip(reason)
    server = start_orthanc(tmp_path_factory.mktemp("orthanc"))
    yield server
    server.stop()

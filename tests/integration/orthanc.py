"""Start a real Orthanc (Debian packages orthanc + orthanc-dicomweb) on free loopback ports for tests.

The generated configuration enables the DICOMweb plugin at /dicom-web/, refuses non-loopback clients,
requires one test user (basic auth), disables the DICOM (DIMSE) server and keeps storage in a temp dir.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

BINARY_CANDIDATES = ("/usr/sbin/Orthanc", "/usr/bin/Orthanc", "/usr/local/bin/Orthanc")
PLUGIN_CANDIDATES = ("/usr/share/orthanc/plugins/libOrthancDicomWeb.so", "/usr/lib/orthanc/libOrthancDicomWeb.so",
                     "/usr/local/share/orthanc/plugins/libOrthancDicomWeb.so")
USER, PASSWORD = "imos-test", "imos-test-password"


def find_orthanc() -> str | None:
    """The Orthanc executable, or None when it is not installed."""
    found = shutil.which("Orthanc")
    return found or next((p for p in BINARY_CANDIDATES if os.access(p, os.X_OK)), None)


def find_dicomweb_plugin() -> str | None:
    """The DICOMweb plugin library, or None when orthanc-dicomweb is not installed."""
    return next((p for p in PLUGIN_CANDIDATES if Path(p).exists()), None)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class OrthancServer:
    """A running Orthanc; ``url`` is its REST root, ``dicomweb`` the DICOMweb root."""

    process: subprocess.Popen[bytes]
    port: int
    workdir: Path
    startup_s: float

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def dicomweb(self) -> str:
        return f"{self.url}/dicom-web"

    @property
    def auth(self) -> tuple[str, str]:
        return (USER, PASSWORD)

    def log_tail(self, lines: int = 30) -> str:
        path = self.workdir / "orthanc.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def stop(self) -> None:
        """Stop this Orthanc (only the process this harness started)."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


def write_config(workdir: Path, port: int, plugin: str) -> Path:
    config = {
        "Name": "IMOS-TEST",
        "StorageDirectory": str(workdir / "db"),
        "IndexDirectory": str(workdir / "db"),
        "HttpServerEnabled": True,
        "HttpPort": port,
        "DicomServerEnabled": False,
        "DicomPort": free_port(),  # unused while the DICOM server is off; a free one in case it is read
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": True,
        "RegisteredUsers": {USER: PASSWORD},
        "Plugins": [plugin],
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": True, "Ssl": False},
        "HttpThreadsCount": 8,
        "ConcurrentJobs": 1,
        "SaveJobs": False,
    }
    path = workdir / "orthanc.json"
    path.write_text(json.dumps(config, indent=2))
    return path


def start_orthanc(workdir: Path, timeout_s: float = 60.0) -> OrthancServer:
    """Start Orthanc with a generated config under ``workdir`` and wait until its REST API answers."""
    binary, plugin = find_orthanc(), find_dicomweb_plugin()
    if binary is None or plugin is None:
        raise RuntimeError("Orthanc or its DICOMweb plugin is not installed (scripts/install_orthanc.sh)")
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = write_config(workdir, port, plugin)
    log = (workdir / "orthanc.log").open("wb")
    start = time.monotonic()
    process = subprocess.Popen([binary, str(config)], stdout=log, stderr=subprocess.STDOUT, cwd=workdir)
    server = OrthancServer(process, port, workdir, 0.0)
    try:
        _wait_ready(server, start + timeout_s)
    except BaseException:
        server.stop()
        raise
    server.startup_s = time.monotonic() - start
    return server


def _wait_ready(server: OrthancServer, deadline: float) -> None:
    """Poll /system and the DICOMweb root until both answer (the plugin loads after the core starts)."""
    with httpx.Client(auth=server.auth, timeout=2.0) as client:
        while time.monotonic() < deadline:
            if server.process.poll() is not None:
                raise RuntimeError(f"Orthanc exited with {server.process.returncode}:\n{server.log_tail()}")
            try:
                if client.get(f"{server.url}/system").status_code == 200 \
                        and client.get(f"{server.dicomweb}/studies").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
    raise RuntimeError(f"Orthanc did not become ready in time:\n{server.log_tail()}")

"""PACS use cases over DICOMweb: resolve an endpoint, pull a series, store a SEG."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

from service.errors import NotFound
from service.io.medical.detect import ReadOptions, load_volume
from service.io.medical.dicomweb import DicomWebClient, PacsEndpoint, endpoints_from_env
from service.io.medical.volume import Volume


def resolve(target: str, environ: Mapping[str, str] | None = None) -> PacsEndpoint:
    """A configured PACS name (IMOS_PACS__<NAME>__URL ...) or a DICOMweb root URL."""
    endpoints = endpoints_from_env(environ if environ is not None else os.environ)
    if target.lower() in endpoints:
        return endpoints[target.lower()]
    if target.startswith(("http://", "https://")):
        return PacsEndpoint("adhoc", target.rstrip("/"), token=os.environ.get("IMOS_PACS_TOKEN"))
    known = ", ".join(sorted(endpoints)) or "none configured"
    raise NotFound(f"unknown PACS {target!r} (configured: {known}); give a name or an http(s) DICOMweb URL")


def pull_series(target: str | PacsEndpoint, study: str, series: str, options: ReadOptions = ReadOptions()) -> Volume:
    """WADO-RS retrieve of one series -> Volume (blocking: call it in a thread from asyncio)."""
    endpoint = target if isinstance(target, PacsEndpoint) else resolve(target)
    with DicomWebClient(endpoint) as client:
        instances = client.retrieve_series(study, series)
    return load_volume(instances, fmt="dicom", options=options)


def store_instances(target: str | PacsEndpoint, instances: Sequence[bytes], study: str | None = None) -> list[str]:
    """STOW-RS; returns the stored SOP Instance UIDs."""
    endpoint = target if isinstance(target, PacsEndpoint) else resolve(target)
    with DicomWebClient(endpoint) as client:
        return client.store(list(instances), study_uid=study)

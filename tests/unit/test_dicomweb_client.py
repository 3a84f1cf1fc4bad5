"""DICOMweb client against an in-process fake PACS (httpx.MockTransport): multipart, auth, errors, privacy."""

from __future__ import annotations

import json
import logging

import httpx
import pytest

from service.errors import BackendUnavailable, InvalidInput, NotFound, PermissionDenied, TooLarge
from service.io.medical.dicomweb import (
    DicomWebClient,
    PacsEndpoint,
    endpoints_from_env,
    multipart_body,
    split_multipart,
)
from tests.medical_builders import ct_series, dev_sequence

FRAMES, _ = dev_sequence("hippocampus__003")
INSTANCES = ct_series(FRAMES[:3], spacing=(1, 1, 1), modality="MR")
STUDY, SERIES = "1.2.3.4.5", "1.2.3.4.6"


def _stow_ok(request: httpx.Request) -> httpx.Response:
    parts = split_multipart(request.content, request.headers["content-type"])
    stored = [{"00081155": {"vr": "UI", "Value": [f"9.9.9.{i}"]}} for i in range(len(parts))]
    return httpx.Response(200, json={"00081199": {"vr": "SQ", "Value": stored}})


def _pacs(request: httpx.Request) -> httpx.Response:
    if request.url.path.endswith(f"/studies/{STUDY}/series/{SERIES}"):
        body, content_type = multipart_body(INSTANCES)
        return httpx.Response(200, content=body, headers={"content-type": content_type})
    if request.method == "POST":
        return _stow_ok(request)
    return httpx.Response(404)


def _client(handler=_pacs, **kw) -> DicomWebClient:  # type: ignore[no-untyped-def]
    endpoint = PacsEndpoint("main", "http://pacs.test/dicom-web", **kw)
    return DicomWebClient(endpoint, transport=httpx.MockTransport(handler))


def test_retrieve_splits_the_multipart_series() -> None:
    with _client() as client:
        assert client.retrieve_series(STUDY, SERIES) == INSTANCES
        with pytest.raises(NotFound):
            client.retrieve_series(STUDY, "7.7.7.7")


def test_store_sends_one_multipart_request_and_returns_stored_uids() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return _stow_ok(request)

    with _client(handler) as client:
        assert client.store(INSTANCES) == ["9.9.9.0", "9.9.9.1", "9.9.9.2"]
        with pytest.raises(InvalidInput, match="nothing was sent"):
            client.store([INSTANCES[0], b"not dicom"])
    assert len(seen) == 1 and seen[0].url.path == "/dicom-web/studies"
    assert 'type="application/dicom"' in seen[0].headers["content-type"]


def test_refused_instances_raise() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        failed = {"00081198": {"vr": "SQ", "Value": [{"00081197": {"vr": "US", "Value": [0xA700]}}]}}
        return httpx.Response(409, json=failed)

    with _client(refuse) as client, pytest.raises(InvalidInput, match="refused 1 of 1"):
        client.store(INSTANCES[:1])


def test_auth_basic_and_bearer() -> None:
    headers: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        headers.append(request.headers.get("authorization", ""))
        return httpx.Response(401)

    with _client(handler, username="u", password="p") as client, pytest.raises(PermissionDenied):
        client.retrieve_series(STUDY, SERIES)
    with _client(handler, token="tok") as client, pytest.raises(PermissionDenied):
        client.store(INSTANCES[:1])
    assert headers[0].startswith("Basic ") and headers[1] == "Bearer tok"


def test_unreachable_timeout_and_server_errors() -> None:
    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    with _client(down) as client, pytest.raises(BackendUnavailable, match="unreachable"):
        client.retrieve_series(STUDY, SERIES)
    with _client(slow) as client, pytest.raises(BackendUnavailable, match="timed out"):
        client.store(INSTANCES[:1])
    with _client(lambda r: httpx.Response(503)) as client, pytest.raises(BackendUnavailable, match="503"):
        client.retrieve_series(STUDY, SERIES)


def test_size_limit_on_retrieval() -> None:
    client = DicomWebClient(PacsEndpoint("main", "http://pacs.test/dicom-web"),
                            transport=httpx.MockTransport(_pacs), max_bytes=1000)
    with client, pytest.raises(TooLarge):
        client.retrieve_series(STUDY, SERIES)


def test_endpoints_from_environment() -> None:
    env = {"IMOS_PACS__MAIN__URL": "http://orthanc:8042/dicom-web/", "IMOS_PACS__MAIN__USERNAME": "u",
           "IMOS_PACS__MAIN__PASSWORD": "pw-secret", "IMOS_PACS__CLOUD__URL": "https://x/dicomweb",
           "IMOS_PACS__CLOUD__TOKEN": "tok-secret", "IMOS_PACS__CLOUD__TIMEOUT_S": "5", "IMOS_OTHER": "1"}
    found = endpoints_from_env(env)
    assert found["main"] == PacsEndpoint("main", "http://orthanc:8042/dicom-web", "u", "pw-secret")
    assert found["cloud"].token == "tok-secret" and found["cloud"].timeout_s == 5.0
    assert "secret" not in repr(found)  # secrets stay out of reprs
    with pytest.raises(InvalidInput, match="URL"):
        endpoints_from_env({"IMOS_PACS__X__USERNAME": "u"})


def test_request_logs_carry_no_uids(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with _client() as client:
        client.retrieve_series(STUDY, SERIES)
        client.store(INSTANCES)
    text = " ".join(r.getMessage() + json.dumps(r.__dict__, default=str) for r in caplog.records)
    assert "HTTP Request" in text and STUDY not in text and SERIES not in text and "9.9.9" not in text

"""A small DICOMweb client: WADO-RS series retrieval and STOW-RS storage, with basic or bearer auth.

PACS endpoints are configured by name (``IMOS_PACS__<NAME>__URL`` and friends, see
:func:`endpoints_from_env`). Errors are the domain's: unreachable or failing PACS -> BackendUnavailable,
bad credentials -> PermissionDenied, unknown series -> NotFound, refused instances -> InvalidInput.
Logs name the PACS and counts, never study/series/instance UIDs (URLs in httpx's own log are redacted).
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self

import httpx

from service.errors import BackendUnavailable, InvalidInput, NotFound, PermissionDenied, TooLarge
from service.io.medical.dicom_files import looks_like_dicom
from service.io.medical.privacy import scrub

log = logging.getLogger(__name__)

_ENV = re.compile(r"^IMOS_PACS__([A-Za-z0-9_-]+?)__([A-Za-z_]+)$")
_STORED, _FAILED, _SOP_UID = "00081199", "00081198", "00081155"  # DICOM JSON tags


@dataclass(frozen=True)
class PacsEndpoint:
    """One PACS: DICOMweb root URL (e.g. http://pacs:8042/dicom-web), credentials, timeout in seconds."""

    name: str
    url: str
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)
    timeout_s: float = 30.0

    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def basic_auth(self) -> httpx.BasicAuth | None:
        if self.username is None or self.token:
            return None
        return httpx.BasicAuth(self.username, self.password or "")


def endpoints_from_env(environ: Mapping[str, str]) -> dict[str, PacsEndpoint]:
    """``IMOS_PACS__<NAME>__URL`` (+ ``USERNAME``, ``PASSWORD``, ``TOKEN``, ``TIMEOUT_S``) -> endpoints by name."""
    fields: dict[str, dict[str, str]] = {}
    for key, value in environ.items():
        match = _ENV.match(key)
        if match:
            fields.setdefault(match.group(1).lower(), {})[match.group(2).lower()] = value
    out = {}
    for name, values in fields.items():
        if "url" not in values:
            raise InvalidInput(f"PACS {name!r} is configured without IMOS_PACS__{name.upper()}__URL")
        timeout = float(values.get("timeout_s", values.get("timeout", "30")))
        out[name] = PacsEndpoint(name, values["url"].rstrip("/"), values.get("username"), values.get("password"),
                                 values.get("token"), timeout)
    return out


class _RedactStudyPaths(logging.Filter):
    """httpx logs every request URL at INFO; DICOMweb URLs hold study and series UIDs."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(re.sub(r"/studies/.*", "/studies/<redacted>", str(a)) if "/studies/" in str(a)
                                else a for a in record.args)
        return True


def _install_redaction() -> None:
    logger = logging.getLogger("httpx")
    if not any(isinstance(f, _RedactStudyPaths) for f in logger.filters):
        logger.addFilter(_RedactStudyPaths())


def split_multipart(body: bytes, content_type: str) -> list[bytes]:
    """A multipart/related body -> the payload of each part (headers dropped)."""
    match = re.search(r'boundary="?([^";]+)"?', content_type)
    if not match:
        raise BackendUnavailable("the PACS sent a multipart response without a boundary")
    delimiter = b"\r\n--" + match.group(1).encode()
    payloads = []
    for chunk in (b"\r\n" + body).split(delimiter)[1:]:
        if chunk.startswith(b"--"):  # the closing delimiter
            break
        _, sep, payload = chunk.partition(b"\r\n\r\n")
        if not sep:
            raise BackendUnavailable("the PACS sent a malformed multipart part")
        payloads.append(payload)
    return payloads


def multipart_body(instances: Sequence[bytes]) -> tuple[bytes, str]:
    """Instances -> (multipart/related body, its Content-Type) for STOW-RS."""
    boundary = f"imos-{uuid.uuid4().hex}"
    parts = [b"--" + boundary.encode() + b"\r\nContent-Type: application/dicom\r\n\r\n" + blob + b"\r\n"
             for blob in instances]
    body = b"".join(parts) + b"--" + boundary.encode() + b"--\r\n"
    return body, f'multipart/related; type="application/dicom"; boundary={boundary}'


class DicomWebClient:
    """Blocking DICOMweb client for one PACS (wrap calls in a thread from async code)."""

    def __init__(self, endpoint: PacsEndpoint, transport: httpx.BaseTransport | None = None,
                 max_bytes: int = 1 << 30) -> None:
        _install_redaction()
        self.endpoint, self.max_bytes = endpoint, max_bytes
        self._http = httpx.Client(base_url=endpoint.url.rstrip("/") + "/", auth=endpoint.basic_auth(),
                                  headers=endpoint.auth_headers(), timeout=endpoint.timeout_s, transport=transport)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def retrieve_series(self, study_uid: str, series_uid: str, transfer_syntax: str = "*") -> list[bytes]:
        """WADO-RS: every instance of one series as Part-10 bytes (``transfer_syntax`` "*": as stored)."""
        accept = f'multipart/related; type="application/dicom"; transfer-syntax={transfer_syntax}'
        start = time.monotonic()
        body, content_type = self._get(f"studies/{study_uid}/series/{series_uid}", accept)
        parts = split_multipart(body, content_type) if "multipart" in content_type else [body]
        instances = [p for p in parts if p]
        if not instances:
            raise NotFound(f"PACS {self.endpoint.name!r} returned no instances for the series")
        if not all(looks_like_dicom(p) for p in instances):
            raise BackendUnavailable(f"PACS {self.endpoint.name!r} returned parts that are not DICOM files")
        log.info("dicomweb series retrieved", extra={"pacs": self.endpoint.name, "instances": len(instances),
                                                     "bytes": len(body), "ms": _ms(start)})
        return instances

    def _get(self, path: str, accept: str) -> tuple[bytes, str]:
        try:
            with self._http.stream("GET", path, headers={"Accept": accept}) as response:
                self._raise_for_status(response, "retrieve")
                chunks, total = [], 0
                for chunk in response.iter_bytes():
                    total += len(chunk)
                    if total > self.max_bytes:
                        raise TooLarge(f"the series from PACS {self.endpoint.name!r} exceeds {self.max_bytes} bytes")
                    chunks.append(chunk)
                return b"".join(chunks), response.headers.get("content-type", "")
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from None

    def store(self, instances: Sequence[bytes], study_uid: str | None = None) -> list[str]:
        """STOW-RS: store instances in ONE request; returns the SOP instance UIDs the PACS stored.

        Everything is checked before the request, so a bad instance sends nothing. A PACS that refuses
        any instance raises InvalidInput (with one instance, as for a SEG, nothing was stored then).
        """
        if not instances:
            raise InvalidInput("nothing to store")
        if not all(looks_like_dicom(blob) for blob in instances):
            raise InvalidInput("only DICOM Part-10 files can be stored; nothing was sent")
        body, content_type = multipart_body(instances)
        path = f"studies/{study_uid}" if study_uid else "studies"
        start = time.monotonic()
        try:
            response = self._http.post(path, content=body, headers={"Content-Type": content_type,
                                                                     "Accept": "application/dicom+json"})
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from None
        stored, failed = _stow_result(response)
        if response.status_code >= 400 and response.status_code != 409:
            self._raise_for_status(response, "store")
        if failed or response.status_code == 409 or len(stored) < len(instances):
            raise InvalidInput(f"PACS {self.endpoint.name!r} refused {max(failed, len(instances) - len(stored))} "
                               f"of {len(instances)} instances (HTTP {response.status_code})")
        log.info("dicomweb instances stored", extra={"pacs": self.endpoint.name, "instances": len(stored),
                                                     "ms": _ms(start)})
        return stored

    def _raise_for_status(self, response: httpx.Response, action: str) -> None:
        code, name = response.status_code, self.endpoint.name
        if code < 400:
            return
        if code in (401, 403):
            raise PermissionDenied(f"PACS {name!r} refused the credentials (HTTP {code})")
        if code == 404:
            raise NotFound(f"PACS {name!r} has no such study or series (HTTP 404)")
        if code == 413:
            raise TooLarge(f"PACS {name!r} refused the {action} as too large (HTTP 413)")
        if code >= 500:
            raise BackendUnavailable(f"PACS {name!r} failed the {action} (HTTP {code})")
        raise InvalidInput(f"PACS {name!r} rejected the {action} (HTTP {code})")

    def _unreachable(self, exc: httpx.HTTPError) -> BackendUnavailable:
        kind = "timed out" if isinstance(exc, httpx.TimeoutException) else "is unreachable"
        return BackendUnavailable(f"PACS {self.endpoint.name!r} {kind} ({scrub(type(exc).__name__)})")


def _stow_result(response: httpx.Response) -> tuple[list[str], int]:
    """(stored SOP instance UIDs, number of failed instances) from a STOW-RS DICOM JSON response."""
    try:
        doc = response.json() if response.content else {}
    except (json.JSONDecodeError, UnicodeDecodeError):
        return [], 0
    if isinstance(doc, list):
        doc = doc[0] if doc else {}
    stored = [str(item[_SOP_UID]["Value"][0]) for item in doc.get(_STORED, {}).get("Value", [])
              if _SOP_UID in item and item[_SOP_UID].get("Value")]
    return stored, len(doc.get(_FAILED, {}).get("Value", []))


def _ms(start: float) -> int:
    return round((time.monotonic() - start) * 1000)

"""Optional OpenTelemetry tracing (off unless IMOS_OTEL_ENDPOINT is set).

Spans carry ids and counts only (never pixels or patient data). The trace context travels from the
gateway to the worker inside the job, so one trace covers a request and the run it started.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

from service.errors import ImosError


class Tracing:
    """A tracer, or a no-op when tracing is off (so callers never branch on it)."""

    def __init__(self, tracer: Any | None = None) -> None:
        self.tracer = tracer

    @property
    def enabled(self) -> bool:
        return self.tracer is not None

    @contextlib.contextmanager
    def span(self, name: str, parent: Mapping[str, str] | None = None, **attributes: Any) -> Iterator[None]:
        if self.tracer is None:
            yield
            return
        from opentelemetry.propagate import extract

        context = extract(dict(parent)) if parent else None
        with self.tracer.start_as_current_span(name, context=context, attributes=_plain(attributes)):
            yield

    def carrier(self) -> dict[str, str]:
        """The current trace context as W3C headers (empty when off)."""
        if self.tracer is None:
            return {}
        from opentelemetry.propagate import inject

        out: dict[str, str] = {}
        inject(out)
        return out


def _plain(attributes: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in attributes.items() if isinstance(v, (str, int, float, bool))}


def setup_tracing(endpoint: str | None, service_name: str, exporter: Any | None = None) -> Tracing:
    """OTLP/HTTP export to endpoint (e.g. http://otel-collector:4318/v1/traces); exporter overrides it (tests)."""
    if not endpoint and exporter is None:
        return Tracing()
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
    except ImportError:
        raise ImosError("IMOS_OTEL_ENDPOINT is set but opentelemetry-sdk is not installed "
                        "(pip install 'imos-serve[tracing]')") from None
    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    if exporter is not None:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    return Tracing(provider.get_tracer("imos-serve"))

"""Tracing in tests: the SDK's in-memory exporter, a real OTLP/HTTP receiver, span helpers."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, Sampler

from middleware import tracing


@contextmanager
def traced(sampler: Sampler = ALWAYS_ON) -> Iterator[InMemorySpanExporter]:
    """Trace everything made inside (workers and endpoints built inside) into memory."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=sampler)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.install(provider)
    try:
        yield exporter
    finally:
        tracing.shutdown()


def hexid(value: int, width: int) -> str:
    return f"{value:0{width}x}"


def names(spans: Sequence[ReadableSpan]) -> list[str]:
    """Span names in start order."""
    return [span.name for span in sorted(spans, key=lambda span: span.start_time or 0)]


def of_trace(spans: Sequence[ReadableSpan], trace_id: int) -> list[ReadableSpan]:
    return sorted((span for span in spans if span.context.trace_id == trace_id),
                  key=lambda span: span.start_time or 0)


def parent_of(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


class _OtlpHandler(BaseHTTPRequestHandler):
    server: _OtlpServer

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        with self.server.lock:
            self.server.got.append(request)
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        """Quiet."""


class _OtlpServer(ThreadingHTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _OtlpHandler)
        self.got: list[ExportTraceServiceRequest] = []
        self.lock = threading.Lock()


@dataclass(frozen=True)
class Exported:
    """One span as an OTLP receiver got it."""

    service: str
    name: str
    trace_id: str
    span_id: str
    parent_id: str
    attributes: dict[str, object]


class OtlpReceiver:
    """An OTLP/HTTP trace receiver on loopback (``endpoint``), decoding with the OpenTelemetry
    protobuf definitions what exporters send to ``/v1/traces``."""

    def __init__(self) -> None:
        self._server = _OtlpServer()

    def __enter__(self) -> OtlpReceiver:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}"

    def spans(self) -> list[Exported]:
        found = []
        with self._server.lock:
            requests = list(self._server.got)
        for request in requests:
            for resource_spans in request.resource_spans:
                service = next((a.value.string_value for a in resource_spans.resource.attributes
                                if a.key == "service.name"), "")
                for scope in resource_spans.scope_spans:
                    for span in scope.spans:
                        attributes = {a.key: _value(a.value) for a in span.attributes}
                        found.append(Exported(service, span.name, span.trace_id.hex(),
                                              span.span_id.hex(), span.parent_span_id.hex(),
                                              attributes))
        return found


def _value(value: AnyValue) -> object:
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind else None

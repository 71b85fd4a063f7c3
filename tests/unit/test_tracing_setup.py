"""Tracing is configured by the standard OTEL_* variables only, and off unless asked for.

The OTLP case exports for real, over HTTP/protobuf, to a receiver on loopback that decodes
what arrives with the OpenTelemetry protobuf definitions."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from middleware import tracing
from middleware.errors import ConfigError
from middleware.tracing import NoTrace, RouteTracer


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in ("OTEL_TRACES_EXPORTER", "OTEL_SDK_DISABLED", "OTEL_SERVICE_NAME",
                 "OTEL_RESOURCE_ATTRIBUTES", "OTEL_TRACES_SAMPLER", "OTEL_TRACES_SAMPLER_ARG",
                 "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_PROTOCOL",
                 "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"):
        monkeypatch.delenv(name, raising=False)
    yield
    tracing.shutdown()


@pytest.mark.parametrize("value", [None, "", "none", " None "])
def test_tracing_is_off_unless_an_exporter_is_named(
    monkeypatch: pytest.MonkeyPatch, value: str | None
) -> None:
    if value is not None:
        monkeypatch.setenv("OTEL_TRACES_EXPORTER", value)
    assert tracing.configure_from_env() is False
    assert tracing.tracer() is None
    assert type(tracing.route_tracer("r", "rest")) is NoTrace
    assert tracing.ingress_tracer("e", "rest") is None


def test_tracing_sdk_disabled_wins_over_an_exporter(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    assert tracing.configure_from_env() is False


@pytest.mark.parametrize(("variables", "named", "says"), [
    ({"OTEL_TRACES_EXPORTER": "jaeger"}, "OTEL_TRACES_EXPORTER", "unknown exporter 'jaeger'"),
    ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
     "OTEL_TRACES_EXPORTER", "pip install opentelemetry-exporter-otlp-proto-grpc"),
    ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"},
     "OTEL_EXPORTER_OTLP_PROTOCOL", "use http/protobuf"),
])
def test_tracing_a_wrong_exporter_setting_fails_the_start_saying_what_to_do(
    monkeypatch: pytest.MonkeyPatch, variables: dict[str, str], named: str, says: str
) -> None:
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as raised:
        tracing.configure_from_env()
    assert named in str(raised.value) and says in str(raised.value)
    assert tracing.tracer() is None


def test_tracing_sampler_variables_are_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_off")
    assert tracing.configure_from_env() is True
    hooks = tracing.route_tracer("r", "rest")
    assert isinstance(hooks, RouteTracer)
    tracer = tracing.tracer()
    assert tracer is not None and not tracer.start_span("x").is_recording()


class _Receiver(BaseHTTPRequestHandler):
    """An OTLP/HTTP trace receiver: keeps every decoded export request."""

    got: ClassVar[list[ExportTraceServiceRequest]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        self.got.append(request)
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        """Quiet."""


@pytest.mark.parametrize("service", [None, "crm-bridge"])
def test_tracing_otlp_exports_to_the_endpoint_in_the_environment(
    monkeypatch: pytest.MonkeyPatch, service: str | None
) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    _Receiver.got = []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp")
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{server.server_port}")
        if service:
            monkeypatch.setenv("OTEL_SERVICE_NAME", service)
        assert tracing.configure_from_env() is True
        tracer = tracing.tracer()
        assert tracer is not None
        tracer.start_span("consume", attributes={"silobridge.route": "r1"}).end()
        tracing.shutdown()  # flushes the batch
    finally:
        server.shutdown()
        server.server_close()
    (request,) = _Receiver.got
    (resource_spans,) = request.resource_spans
    attributes = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
    assert attributes["service.name"] == (service or "silobridge")
    (span,) = [span for scope in resource_spans.scope_spans for span in scope.spans]
    assert span.name == "consume"
    assert {a.key: a.value.string_value for a in span.attributes} == {"silobridge.route": "r1"}

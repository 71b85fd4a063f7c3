"""Tracing is configured by the standard OTEL_* variables only, and off unless asked for.

The OTLP case exports for real, over HTTP/protobuf, to a receiver on loopback that decodes
what arrives with the OpenTelemetry protobuf definitions."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from middleware import tracing
from middleware.errors import ConfigError
from middleware.tracing import NoTrace, RouteTracer
from tests.tracing_helpers import OtlpReceiver

QUICKSTART = Path(__file__).resolve().parents[2] / "mappings" / "quickstart.yaml"


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


@pytest.mark.parametrize("service", [None, "crm-bridge"])
def test_tracing_otlp_exports_to_the_endpoint_in_the_environment(
    monkeypatch: pytest.MonkeyPatch, service: str | None
) -> None:
    with OtlpReceiver() as receiver:
        monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp")
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint)
        if service:
            monkeypatch.setenv("OTEL_SERVICE_NAME", service)
        assert tracing.configure_from_env() is True
        tracer = tracing.tracer()
        assert tracer is not None
        tracer.start_span("consume", attributes={"silobridge.route": "r1"}).end()
        tracing.shutdown()  # flushes the batch
        (span,) = receiver.spans()
    assert span.service == (service or "silobridge")
    assert span.name == "consume"
    assert span.attributes == {"silobridge.route": "r1"}


def test_tracing_run_with_a_wrong_exporter_stops_with_one_line_saying_what_to_do(
    tmp_path: Path,
) -> None:
    env = {**os.environ, "OTEL_TRACES_EXPORTER": "zipkin"}
    done = subprocess.run(
        [sys.executable, "-m", "middleware", "run", "-c", str(QUICKSTART)],
        env=env, capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert "OTEL_TRACES_EXPORTER: unknown exporter 'zipkin'" in done.stderr
    assert "Traceback" not in done.stderr

"""Whether this process traces, and where its spans go: the standard ``OTEL_*`` variables.

Tracing is off unless ``OTEL_TRACES_EXPORTER`` names an exporter. The OpenTelemetry
specification defaults that variable to ``otlp``; silobridge does not, because a daemon that
starts exporting to ``localhost:4318`` after an upgrade (and logs a failed export every few
seconds where no collector listens) is a surprise, and because off must cost nothing on the
message path: with no tracer installed every hook is a no-op (``route_tracer`` hands out one
that does nothing, the ingress skips its spans).

Everything else comes from the SDK's own reading of the environment, so the variables mean
what the OpenTelemetry documentation says: ``OTEL_SERVICE_NAME`` and
``OTEL_RESOURCE_ATTRIBUTES`` (the service is called ``silobridge`` when neither names it),
``OTEL_TRACES_SAMPLER`` / ``OTEL_TRACES_SAMPLER_ARG``, ``OTEL_BSP_*`` for the batch processor,
``OTEL_EXPORTER_OTLP_ENDPOINT`` / ``..._TRACES_ENDPOINT``, ``..._HEADERS``, ``..._TIMEOUT``,
``..._PROTOCOL``. Spans are exported in batches on the SDK's own thread; the message path only
queues them (a full queue drops spans, never blocks a message).

The OTLP exporters pull in protobuf (and gRPC for ``grpc``), so they come with the ``otel``
extra; the API and SDK are small, pure Python and always installed.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.trace import Tracer

from middleware.errors import ConfigError, Problem

__all__ = ["check_env", "configure_from_env", "install", "shutdown", "tracer"]

_WHERE = "environment"
_EXPORTERS = ("otlp", "console", "none")


class _State:
    provider: TracerProvider | None = None
    tracer: Tracer | None = None


def tracer() -> Tracer | None:
    """The tracer spans are made with; None while tracing is off."""
    return _State.tracer


def install(provider: TracerProvider) -> None:
    """Trace with ``provider`` from now on (tests install one with an in-memory exporter).

    Kept here rather than as the OpenTelemetry global provider, which can be set only once
    per process: a test suite installs and removes several.
    """
    _State.provider = provider
    _State.tracer = provider.get_tracer("silobridge")


def shutdown() -> None:
    """Export what is queued and turn tracing off (at the end of the process, or a test)."""
    provider, _State.provider, _State.tracer = _State.provider, None, None
    if provider is not None:
        provider.shutdown()


def configure_from_env(environ: Mapping[str, str] | None = None) -> bool:
    """Install a provider when ``OTEL_TRACES_EXPORTER`` names an exporter; True if tracing.

    Raises ConfigError for an exporter name that is not known or not installed, so a typo
    fails the start instead of silently tracing nothing.
    """
    exporters = _exporters(os.environ if environ is None else environ)
    if not exporters:
        return False
    resource = Resource.create()
    # the SDK's default name is "unknown_service" (with ":<executable>" in later releases)
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: "silobridge"}))
    provider = TracerProvider(resource=resource)  # the sampler comes from OTEL_TRACES_SAMPLER
    for exporter in exporters:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    install(provider)
    return True


def check_env(environ: Mapping[str, str] | None = None) -> None:
    """Raise ConfigError where ``configure_from_env`` would, without tracing here (a
    supervisor whose processes trace)."""
    for exporter in _exporters(os.environ if environ is None else environ):
        exporter.shutdown()


def _exporters(env: Mapping[str, str]) -> list[SpanExporter]:
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return []
    names = [name.strip().lower() for name in env.get("OTEL_TRACES_EXPORTER", "").split(",")]
    return [_exporter(name, env) for name in names if name and name != "none"]


def _exporter(name: str, env: Mapping[str, str]) -> SpanExporter:
    if name == "console":
        return ConsoleSpanExporter()
    if name != "otlp":
        raise _problem("OTEL_TRACES_EXPORTER", f"unknown exporter {name!r}; silobridge "
                       f"exports with one of {', '.join(_EXPORTERS)} (unset or 'none': off)")
    protocol = (env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
                or env.get("OTEL_EXPORTER_OTLP_PROTOCOL") or "http/protobuf").strip().lower()
    try:
        if protocol == "http/protobuf":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
                OTLPSpanExporter as HttpExporter,
            )
            return HttpExporter()
        if protocol == "grpc":
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
                OTLPSpanExporter as GrpcExporter,
            )
            return GrpcExporter()
    except ImportError as exc:
        extra = ("pip install 'silobridge[otel]'" if protocol == "http/protobuf"
                 else "pip install opentelemetry-exporter-otlp-proto-grpc")
        raise _problem("OTEL_TRACES_EXPORTER", f"the OTLP exporter for {protocol} is not "
                       f"installed ({exc.name}); {extra}, or unset the variable") from None
    raise _problem("OTEL_EXPORTER_OTLP_PROTOCOL", f"protocol {protocol!r} is not supported; "
                   f"use http/protobuf (the default) or grpc")


def _problem(variable: str, message: str) -> ConfigError:
    return ConfigError([Problem(_WHERE, None, variable, message)])

"""Tracing in tests: the SDK's in-memory exporter, and the spans of one trace by name."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_ON

from middleware import tracing


@contextmanager
def traced() -> Iterator[InMemorySpanExporter]:
    """Trace everything made inside (workers and endpoints built inside) into memory."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=ALWAYS_ON)
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

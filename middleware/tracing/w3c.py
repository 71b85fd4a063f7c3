"""W3C Trace Context header values: read what a sender claims, write what we continue.

Everything here reads sender-controlled text, so it is bounded before it is parsed: a
``traceparent`` longer than 512 characters or a ``tracestate`` longer than 512 (the length the
W3C recommendation asks vendors to propagate at least) is ignored without being parsed or
logged, and a malformed value is ignored the same way: the request goes on as the start of a
new trace, never an error, and no value is echoed in an answer. Parsing itself is the
OpenTelemetry propagator's (version ``ff`` refused, zero ids refused, a version 00 value with
extra fields refused, ``tracestate`` members checked and at most 32 kept).

A value that leaves the process (an HTTP header to a target, an AMQP header) is checked again
on its way out (``outgoing``): an envelope may come from a CloudEvent whose ``traceparent``
attribute the sender wrote, and an invalid one must not reach a target or grow an AMQP frame.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Protocol

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import SpanContext
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.trace.span import TraceState

__all__ = [
    "MAX_LENGTH",
    "TRACEPARENT",
    "TRACESTATE",
    "Headers",
    "format_context",
    "outgoing",
    "parent_from_headers",
    "parent_from_values",
]

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
MAX_LENGTH = 512
"""Longest traceparent or tracestate value read; a longer one is ignored unparsed."""

_PROPAGATOR = TraceContextTextMapPropagator()


class Headers(Protocol):
    """What ``parent_from_headers`` reads: starlette's ``Headers`` (case-insensitive)."""

    def getlist(self, key: str) -> Sequence[str]: ...


# what this process writes (version 00); anything else is not sent on
_VERSION_00 = re.compile(r"00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}")
_ZERO_TRACE, _ZERO_SPAN = "0" * 32, "0" * 16


def parent_from_values(traceparent: object, tracestate: object = None) -> Context | None:
    """The remote parent named by one traceparent (and tracestate) value; None when there is
    none or it is malformed (the caller then starts a new trace)."""
    if not isinstance(traceparent, str) or not traceparent or len(traceparent) > MAX_LENGTH:
        return None
    carrier = {TRACEPARENT: traceparent}
    if isinstance(tracestate, str) and tracestate and len(tracestate) <= MAX_LENGTH:
        carrier[TRACESTATE] = tracestate
    context = _PROPAGATOR.extract(carrier)
    return context if trace.get_current_span(context).get_span_context().is_valid else None


def parent_from_headers(values: Headers) -> Context | None:
    """``parent_from_values`` of HTTP headers: exactly one traceparent field (two are
    ambiguous, so neither is trusted); several tracestate fields are one list."""
    parents = values.getlist(TRACEPARENT)
    if len(parents) != 1:
        return None
    states = values.getlist(TRACESTATE)
    state = ",".join(states) if states else None
    return parent_from_values(parents[0], state)


def format_context(span_context: SpanContext) -> tuple[str, str | None]:
    """(traceparent, tracestate or None) naming ``span_context`` as the parent downstream."""
    traceparent = (f"00-{span_context.trace_id:032x}-{span_context.span_id:016x}-"
                   f"{int(span_context.trace_flags):02x}")
    state = span_context.trace_state.to_header() if span_context.trace_state else ""
    return traceparent, state or None


def outgoing(traceparent: str | None, tracestate: str | None) -> dict[str, str]:
    """The headers that carry an envelope's trace context on: none unless it is valid."""
    if not traceparent:  # the common case when nothing traces: one comparison
        return {}
    if len(traceparent) != 55 or _VERSION_00.fullmatch(traceparent) is None:
        return {}
    if traceparent[3:35] == _ZERO_TRACE or traceparent[36:52] == _ZERO_SPAN:  # "no parent"
        return {}
    headers = {TRACEPARENT: traceparent}
    if tracestate and len(tracestate) <= MAX_LENGTH:
        state = TraceState.from_header([tracestate]).to_header()
        if state:
            headers[TRACESTATE] = state
    return headers



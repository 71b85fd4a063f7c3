"""The spans of the ingress: one receive span per request, one publish span per event.

    caller's span (traceparent header) -> receive -> publish -> (consume in the worker)

The receive span continues the caller's trace when one valid ``traceparent`` arrives, and
starts a new trace otherwise; a malformed, repeated or overlong one is ignored (``w3c``) and
the span says so (``silobridge.caller_trace=ignored``) without quoting it. Each event's publish
span is written into its envelope as ``traceparent`` / ``tracestate`` before it is published,
so the worker continues from there; a CloudEvent that arrived with a ``traceparent`` of its
own becomes a span link, so the event's original trace is still one click away. REST and SOAP
share this through ``middleware.ingress.endpoint``, and it is the endpoint that holds the
tracer only while tracing is on: off, a request pays one ``is None``. Events with no request
around them (a scheduled poll's, ``silobridge send``'s) get a root publish span (``starting``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from types import TracebackType

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode, Tracer
from starlette.requests import Request
from starlette.responses import Response

from middleware.broker.topology import EVENTS_EXCHANGE
from middleware.envelope import Envelope
from middleware.tracing.setup import tracer
from middleware.tracing.spans import (
    ADAPTER,
    CALLER,
    ENDPOINT,
    ERROR_TYPE,
    EVENT_TYPE,
    OUTCOME,
    failed,
)
from middleware.tracing.w3c import (
    TRACEPARENT,
    TRACESTATE,
    format_context,
    outgoing,
    parent_from_headers,
    parent_from_values,
)

__all__ = ["IngressTracer", "Publishing", "passing_on", "starting"]


class Publishing:
    """The publish spans of one request's events; ``with`` ends them (failed on an error)."""

    def __init__(self, spans: Sequence[tuple[str, Span]] = ()) -> None:
        self._spans = list(spans)

    def confirmed(self, ids: Sequence[str]) -> None:
        """The broker confirmed these envelope ids; the other events were duplicates."""
        if not self._spans:
            return
        stored = set(ids)
        for envelope_id, span in self._spans:
            span.set_attribute(OUTCOME, "published" if envelope_id in stored else "duplicate")
            span.end()
        self._spans = []

    def __enter__(self) -> Publishing:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        for _, span in self._spans:
            if error is not None:
                failed(span, error)
            span.end()
        self._spans = []


_NOT_PUBLISHING = Publishing()  # while tracing is off: nothing to start or end


def passing_on(events: Sequence[tuple[str | None, Envelope]]) -> Publishing:
    """While tracing is off: an event's own trace context (a CloudEvent's attributes) goes on
    only when valid, so a sender's malformed or oversized value never reaches a route's
    target (as a ``ce-traceparent`` header, say). Costs nothing for events without one."""
    for _, envelope in events:
        if envelope.traceparent is not None or envelope.tracestate is not None:
            valid = outgoing(envelope.traceparent, envelope.tracestate)
            envelope.traceparent = valid.get(TRACEPARENT)
            envelope.tracestate = valid.get(TRACESTATE)
    return _NOT_PUBLISHING


def starting(name: str, adapter: str, envelopes: Sequence[Envelope]) -> Publishing:
    """Events that begin here, with no request around them (a scheduled poll's records,
    ``silobridge send``): while tracing is on, each gets a publish span that is the root of its
    own trace, written into its envelope, so the consume spans of the routes have a parent and
    one event's routes share one trace. Off, nothing happens."""
    current = tracer()
    if current is None:
        return _NOT_PUBLISHING
    events = [(None, envelope) for envelope in envelopes]
    return IngressTracer(current, name, adapter).publishing(events, parent=Context())


class IngressTracer:
    """Spans of one endpoint's requests."""

    def __init__(self, tracer: Tracer, endpoint: str, adapter: str) -> None:
        self._tracer = tracer
        self._attributes = {ENDPOINT: endpoint, ADAPTER: adapter}

    async def serve(self, request: Request,
                    answer: Callable[[Request], Awaitable[Response]]) -> Response:
        """``answer`` the request inside its receive span (current, for logs and publish)."""
        parent = parent_from_headers(request.headers)
        caller = ("continued" if parent is not None
                  else "ignored" if TRACEPARENT in request.headers else "new")
        span = self._tracer.start_span(
            "receive", context=parent or Context(), kind=SpanKind.SERVER,
            attributes={**self._attributes, CALLER: caller,
                        "http.request.method": request.method})
        token = otel_context.attach(trace.set_span_in_context(span, Context()))
        try:
            response = await answer(request)
        except BaseException as exc:  # cancelled, or a bug past the endpoint's own guard
            failed(span, exc)
            raise
        else:
            status = response.status_code
            span.set_attribute("http.response.status_code", status)
            if status >= 500:
                span.set_status(Status(StatusCode.ERROR, str(status)))
            return response
        finally:
            otel_context.detach(token)
            span.end()

    @staticmethod
    def refused(reason: str) -> None:
        """The request was refused for ``reason`` (a fixed word such as 'signature')."""
        span = trace.get_current_span()
        span.set_attribute(OUTCOME, "refused")
        span.set_attribute(ERROR_TYPE, reason)

    def publishing(self, events: Sequence[tuple[str | None, Envelope]],
                   parent: Context | None = None) -> Publishing:
        """Start a publish span per event and write it into the event's envelope; each is a
        child of ``parent`` (None: the current span, the request's receive span)."""
        spans = []
        for _, envelope in events:
            own = parent_from_values(envelope.traceparent, envelope.tracestate)
            links = [Link(trace.get_current_span(own).get_span_context())] if own else None
            span = self._tracer.start_span(
                "publish", context=parent, kind=SpanKind.PRODUCER, links=links,
                attributes={**self._attributes, EVENT_TYPE: envelope.type,
                            "messaging.system": "rabbitmq",
                            "messaging.destination.name": EVENTS_EXCHANGE})
            envelope.traceparent, envelope.tracestate = format_context(span.get_span_context())
            spans.append((envelope.id, span))
        return Publishing(spans)

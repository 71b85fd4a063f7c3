"""OpenTelemetry tracing: one trace per business event, from the webhook to the target call.

    setup.py    on or off, and where spans go: the standard ``OTEL_*`` environment variables
    w3c.py      W3C Trace Context values in and out, bounded and checked
    spans.py    attribute names; errors named by class, never by message or payload
    ingress.py  receive and publish spans (REST and SOAP through the shared endpoint), and
                the root publish spans of polled and sent events
    worker.py   consume, map, enrich, deliver, retry and dead-letter spans of a route

The trace context travels in the envelope (``traceparent`` / ``tracestate``, the CloudEvents
distributed tracing extension) and, for tools and other consumers, in AMQP headers of the same
names. ``docs/observability.md`` shows the trace and how to send it to Jaeger or Tempo.
"""

from __future__ import annotations

from middleware.tracing.ingress import IngressTracer, Publishing, passing_on, starting
from middleware.tracing.setup import check_env, configure_from_env, install, shutdown, tracer
from middleware.tracing.w3c import outgoing
from middleware.tracing.worker import NoTrace, RouteTracer

__all__ = ["IngressTracer", "NoTrace", "Publishing", "RouteTracer",
           "check_env", "configure_from_env", "ingress_tracer", "install", "outgoing",
           "passing_on", "route_tracer", "shutdown", "starting", "tracer"]

_OFF = NoTrace()


def route_tracer(route: str, target: str) -> NoTrace:
    """A route's tracing hooks: spans while tracing is on, no-ops while it is off."""
    current = tracer()
    return _OFF if current is None else RouteTracer(current, route, target)


def ingress_tracer(endpoint: str, adapter: str) -> IngressTracer | None:
    """An endpoint's spans; None while tracing is off (the endpoint then skips them)."""
    current = tracer()
    return None if current is None else IngressTracer(current, endpoint, adapter)

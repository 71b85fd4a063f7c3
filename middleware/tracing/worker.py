"""The spans of a route's worker: one consume span per message, a span per stage inside it.

    publish (ingress) -> consume -> [enrich] -> map -> [enrich] -> deliver
                                 -> retry | dead-letter
                      -> consume (after the retry tier's delay, the same message again) -> ...

The pipeline is a chain of callbacks on several threads (the consumer's, the route's store
threads, a target's event loop), so its spans cannot be ``with`` blocks on one thread: they
are started and ended explicitly and kept per delivery until it settles. ``run`` makes the
message's consume span current while pipeline code for it runs, so every log line about it
carries ``trace_id`` and ``span_id`` (``middleware.log``); it runs the code in a copy of the
thread's context, so nothing attached there outlives the call.

The consume span's parent is the ``traceparent`` the envelope carries (set by the ingress, or
by whoever published the event), else the AMQP header of that name. A retried message is the
same body again, so every attempt is a child of the same publish span: one trace shows all.
``delivering`` rewrites the envelope's ``traceparent`` to the deliver span, so the target
receives the context of the call it answers (REST and SOAP as HTTP headers, AMQP in the
envelope and its headers); an enrich step's request carries its ``enrich`` span the same way
(``EnrichSpans.carried``).

``NoTrace`` is what a route gets while tracing is off: every hook returns at once.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer

from middleware.broker.contract import Delivery
from middleware.broker.topology import queue_name
from middleware.envelope import Envelope
from middleware.headers import ATTEMPTS
from middleware.outcome import Outcome
from middleware.tracing.spans import (
    ATTEMPT,
    ERROR_TYPE,
    EVENT_TYPE,
    FAILED_STAGE,
    OUTCOME,
    ROUTE,
    TARGET,
    failed,
)
from middleware.tracing.w3c import (
    TRACEPARENT,
    TRACESTATE,
    format_context,
    outgoing,
    parent_from_values,
)

if TYPE_CHECKING:
    from middleware.enrich import Enrichment

__all__ = ["EnrichSpans", "NoTrace", "RouteTracer"]

T = TypeVar("T")
_NOTHING: AbstractContextManager[None] = nullcontext()


class NoTrace:
    """A route's tracing hooks while tracing is off: each returns at once."""

    def run(self, delivery: Delivery, function: Callable[..., T], *args: Any) -> T:
        """Run pipeline code for ``delivery`` with its trace context current."""
        return function(*args)

    def consumed(self, delivery: Delivery, envelope: Envelope) -> None:
        """The message decoded: its consume span starts (in ``run``)."""

    def stage(self, delivery: Delivery, name: str) -> AbstractContextManager[None]:
        """A ``with`` block that is one synchronous stage (map, enrich) of the message."""
        return _NOTHING

    def enriching(self, delivery: Delivery, enrichment: Enrichment) -> EnrichSpans:
        """The message goes through the route's enrich steps (``middleware.enrich``): the
        returned hooks follow it through steps, mapping, steps and the target call."""
        return _NO_ENRICH

    def delivering(self, delivery: Delivery, envelope: Envelope) -> None:
        """The target is about to be called with ``envelope``."""

    def delivered(self, delivery: Delivery, error: BaseException | None) -> None:
        """The target answered (``error`` None) or failed."""

    def failing(self, delivery: Delivery, envelope: Envelope | None, error: BaseException,
                stage: str, dead: bool) -> None:
        """The message goes to a retry tier or the DLQ (in ``run``)."""

    def parked(self, delivery: Delivery, error: BaseException | None) -> None:
        """Its retry or DLQ copy was confirmed (``error`` None) or not."""

    def finished(self, delivery: Delivery, outcome: Outcome) -> None:
        """The message was settled with ``outcome``: its spans end."""


class EnrichSpans:
    """Hooks of an enriched message's chain (its steps run on the systems' threads, so each
    phase's span ends when the next phase starts). These do nothing: tracing is off."""

    def mapping(self) -> None:
        """The steps before the mapping answered; the mapping starts."""

    def mapped(self, done: Future[Any]) -> None:
        """The mapping finished (a failure is recorded when the message fails)."""

    def delivering(self, envelope: Envelope) -> None:
        """The steps after the mapping answered; the target is called with ``envelope``."""

    def carried(self) -> Mapping[str, str]:
        """The W3C headers a step's request carries: none while tracing is off (an event's
        own ``traceparent`` is passed on to its target, but a system call is silobridge's
        own read, with no span of ours to name while nothing traces)."""
        return _NO_HEADERS


_NO_HEADERS: Mapping[str, str] = {}
_NO_ENRICH = EnrichSpans()


@dataclass(slots=True)
class _Open:
    consume: Span
    context: Context
    recording: bool
    step: Span | None = None
    """The deliver, retry or dead-letter span in progress."""


class RouteTracer(NoTrace):
    """The spans of one route's messages (see the module docstring)."""

    def __init__(self, tracer: Tracer, route: str, target: str) -> None:
        self._tracer = tracer
        self._common = {ROUTE: route, TARGET: target}
        self._consume = {**self._common, "messaging.system": "rabbitmq",
                         "messaging.operation.type": "process",
                         "messaging.destination.name": queue_name(route)}
        self._open: dict[int, _Open] = {}  # by id(delivery); dict operations hold the GIL

    def run(self, delivery: Delivery, function: Callable[..., T], *args: Any) -> T:
        return contextvars.copy_context().run(self._within, delivery, function, args)

    def _within(self, delivery: Delivery, function: Callable[..., T], args: Any) -> T:
        message = self._open.get(id(delivery))
        if message is not None:
            otel_context.attach(message.context)  # in run's copy: gone when it returns
        return function(*args)

    def consumed(self, delivery: Delivery, envelope: Envelope) -> None:
        self._begin(delivery, envelope)

    def _begin(self, delivery: Delivery, envelope: Envelope | None) -> _Open:
        message = self._open.get(id(delivery))
        if message is not None:
            return message
        headers = delivery.headers
        parent = None if envelope is None else parent_from_values(envelope.traceparent,
                                                                  envelope.tracestate)
        if parent is None:  # a message from elsewhere may carry it in its headers only
            parent = parent_from_values(headers.get(TRACEPARENT), headers.get(TRACESTATE))
        attributes: dict[str, Any] = {
            **self._consume, ATTEMPT: _attempts(headers) + 1,
            "messaging.rabbitmq.redelivered": delivery.redelivered}
        if envelope is not None:
            attributes[EVENT_TYPE] = envelope.type
        span = self._tracer.start_span("consume", context=parent or Context(),
                                       kind=SpanKind.CONSUMER, attributes=attributes)
        message = _Open(span, trace.set_span_in_context(span, Context()), span.is_recording())
        self._open[id(delivery)] = message
        otel_context.attach(message.context)  # callers run inside ``run``
        return message

    def stage(self, delivery: Delivery, name: str) -> AbstractContextManager[None]:
        message = self._open.get(id(delivery))
        if message is None or not message.recording:  # sampled out: nothing to record,
            return _NOTHING  # and an internal stage has no context to pass on
        return self._stage(message, name)

    @contextmanager
    def _stage(self, message: _Open, name: str) -> Iterator[None]:
        span = self._tracer.start_span(name, context=message.context, attributes=self._common)
        try:
            yield
        except BaseException as exc:
            failed(span, exc)
            raise
        else:
            span.set_attribute(OUTCOME, "ok")
        finally:
            span.end()

    def enriching(self, delivery: Delivery, enrichment: Enrichment) -> EnrichSpans:
        message = self._open.get(id(delivery))
        if message is None:
            return _NO_ENRICH
        after = sum(bool(step.config.after_mapping) for step in enrichment.steps)
        spans = _Enriched(self, delivery, message, after)
        if len(enrichment.steps) > after:
            spans.step("enrich", len(enrichment.steps) - after, "before_mapping")
        return spans

    def delivering(self, delivery: Delivery, envelope: Envelope) -> None:
        message = self._open.get(id(delivery))
        if message is None:
            return
        span = self._tracer.start_span("deliver", context=message.context,
                                       kind=SpanKind.CLIENT, attributes=self._common)
        message.step = span
        envelope.traceparent, envelope.tracestate = format_context(span.get_span_context())

    def delivered(self, delivery: Delivery, error: BaseException | None) -> None:
        message = self._open.get(id(delivery))
        if message is None or message.step is None:
            return
        span, message.step = message.step, None
        if error is None:
            span.set_attribute(OUTCOME, "delivered")
        else:
            failed(span, error)
            span.set_attribute("silobridge.retryable", bool(getattr(error, "retryable", False)))
        span.end()

    def failing(self, delivery: Delivery, envelope: Envelope | None, error: BaseException,
                stage: str, dead: bool) -> None:
        message = self._begin(delivery, envelope)
        if message.step is not None:  # the target call raised before it returned a Future
            failed(message.step, error)
            message.step.end()
        message.consume.set_attribute(FAILED_STAGE, stage)
        message.consume.set_attribute(ERROR_TYPE, type(error).__name__)
        span = self._tracer.start_span(
            "dead-letter" if dead else "retry", context=message.context,
            kind=SpanKind.PRODUCER,
            attributes={**self._common, FAILED_STAGE: stage, ERROR_TYPE: type(error).__name__,
                        "silobridge.retryable": bool(getattr(error, "retryable", False))})
        if dead:
            span.set_status(Status(StatusCode.ERROR, type(error).__name__))
        message.step = span

    def parked(self, delivery: Delivery, error: BaseException | None) -> None:
        message = self._open.get(id(delivery))
        if message is None or message.step is None:
            return
        span, message.step = message.step, None
        if error is None:
            span.set_attribute(OUTCOME, "published")
        else:  # the copy was not confirmed: the message is held and its copy sent again later
            span.set_attribute("silobridge.publish_error", type(error).__name__)
            span.set_attribute(OUTCOME, "held")
        span.end()

    def finished(self, delivery: Delivery, outcome: Outcome) -> None:
        message = self._open.pop(id(delivery), None)
        if message is None:
            return
        if message.step is not None:
            message.step.end()
        span = message.consume
        span.set_attribute(OUTCOME, outcome.value)
        if outcome is Outcome.DEAD_LETTERED:
            span.set_status(Status(StatusCode.ERROR, outcome.value))
        span.end()


class _Enriched(EnrichSpans):
    """An enriched message's phases as spans, one at a time in the message's ``step`` slot
    (where a failure finds it: ``delivered`` or ``failing`` ends it failed)."""

    def __init__(self, tracer: RouteTracer, delivery: Delivery, message: _Open,
                 after: int) -> None:
        self._tracer = tracer
        self._delivery = delivery
        self._message = message
        self._after = after

    def step(self, name: str, steps: int = 0, phase: str = "") -> None:
        self._end_step()
        attributes: dict[str, Any] = dict(self._tracer._common)
        if steps:
            attributes.update({"silobridge.enrich.steps": steps,
                               "silobridge.enrich.phase": phase})
        self._message.step = self._tracer._tracer.start_span(
            name, context=self._message.context, attributes=attributes)

    def mapping(self) -> None:
        self.step("map")

    def mapped(self, done: Future[Any]) -> None:
        if done.exception() is None:
            if self._after:
                self.step("enrich", self._after, "after_mapping")
            else:
                self._end_step()

    def delivering(self, envelope: Envelope) -> None:
        self._end_step()
        self._tracer.delivering(self._delivery, envelope)

    def carried(self) -> Mapping[str, str]:
        """The enrich span in progress (before or after the mapping) as the parent of the
        request, sampled or not, like the deliver span for the target."""
        span = self._message.step
        if span is None:
            return _NO_HEADERS
        return outgoing(*format_context(span.get_span_context()))

    def _end_step(self) -> None:
        span, self._message.step = self._message.step, None
        if span is not None:
            span.set_attribute(OUTCOME, "ok")
            span.end()


def _attempts(headers: dict[str, Any]) -> int:
    try:
        return int(str(headers.get(ATTEMPTS, 0) or 0))
    except ValueError:
        return 0

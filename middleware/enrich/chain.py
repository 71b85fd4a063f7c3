"""A route's enrich steps around its mapping, chained through Futures so no thread waits.

    source payload -> step 1 -> ... (before) -> mapping -> step k -> ... (after_mapping) -> target

Each step renders its request (``StepCall.prepare``), takes a fresh answer from its cache or
sends the request (``fetch``, on its system's thread or pool), keeps the ``select``ed part and
puts it at ``into`` in a copy of the payload; the next stage starts in the callback of the one
before. The consumer thread (the broker's I/O loop) only starts the first call: a slow or
hanging system holds a Future and its own connections for at most its timeout, never the loop
and never another route. A failure of any step becomes an ``EnrichError`` (stage ``enrich``)
with the system's own classification, so the route's retry tiers and DLQ treat it like a failed
delivery: a 503 is retried (Retry-After honoured), a 404 is dead-lettered.

The source payload is validated against the mapping's schema after the steps before it: the
mapping reads what they added, so its schema describes the enriched payload.

``process`` takes ``trace``, asked for the W3C headers each time a step sends its request (the
route's tracer gives the ``enrich`` span in progress, which changes between the phases before
and after the mapping; ``no_trace`` while tracing is off), so a system sees which message's
trace called it.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from typing import Any, TypeVar

from middleware import metrics
from middleware.config.enrich import EnrichStep
from middleware.enrich.cache import AnswerCache
from middleware.enrich.contract import Prepared, StepCall
from middleware.envelope import Envelope
from middleware.errors import EnrichError, ProcessingError

__all__ = ["Enrichment", "Step", "merged", "no_trace", "selected", "then"]

T = TypeVar("T")
U = TypeVar("U")
Trace = Callable[[], Mapping[str, str]]
"""The W3C headers a step's request carries, asked for when it is sent."""

_NONE: Mapping[str, str] = {}


def no_trace() -> Mapping[str, str]:
    """No trace context to send (tracing is off)."""
    return _NONE


def completed(value: T) -> Future[T]:
    future: Future[T] = Future()
    future.set_result(value)
    return future


def failed(error: BaseException) -> Future[Any]:
    future: Future[Any] = Future()
    future.set_exception(error)
    return future


def then(future: Future[T], next_stage: Callable[[T], Future[U]]) -> Future[U]:
    """A Future of ``next_stage(result)``, started in ``future``'s callback; an exception
    anywhere (a bug included) fails the returned Future instead of escaping a callback."""
    result: Future[U] = Future()

    def copy(done: Future[U]) -> None:
        error = done.exception()
        if error is not None:
            result.set_exception(error)
        else:
            result.set_result(done.result())

    def start(done: Future[T]) -> None:
        error = done.exception()
        if error is not None:
            result.set_exception(error)
            return
        try:
            following = next_stage(done.result())
        except BaseException as exc:  # handed on: the pipeline dead-letters or retries it
            result.set_exception(exc)
            return
        following.add_done_callback(copy)

    future.add_done_callback(start)
    return result


def selected(answer: Any, path: str | None) -> Any:
    """The part of an answer at a dotted path (list items by index); None when absent."""
    current = answer
    for part in path.split(".") if path else ():
        if isinstance(current, dict):
            current = current.get(part)
        elif isinstance(current, list) and part.lstrip("-").isdigit():
            index = int(part)
            current = current[index] if -len(current) <= index < len(current) else None
        else:
            return None
    return current


def merged(payload: Any, into: str, value: Any) -> dict[str, Any]:
    """A copy of the payload with ``value`` at the dotted path ``into``; objects on the way are
    copied (never changed in place: the envelope's data stays what arrived) or created."""
    if not isinstance(payload, dict):
        raise EnrichError(f"the payload is {type(payload).__name__}, not an object, so the "
                          f"answer cannot be put at {into!r}; enrich a route whose payload is a "
                          f"JSON object", retryable=False, details={"into": into})
    top: dict[str, Any] = dict(payload)
    current = top
    *parents, last = into.split(".")
    for depth, part in enumerate(parents):
        child = current.get(part)
        if child is None:
            child = {}
        elif not isinstance(child, dict):
            where = ".".join(parents[:depth + 1])
            raise EnrichError(f"payload.{where} is {type(child).__name__}, not an object, so "
                              f"the answer cannot be put at {into!r}; choose another 'into'",
                              retryable=False, details={"into": into})
        else:
            child = dict(child)
        current[part] = child
        current = child
    current[last] = value
    return top


class Step:
    """One configured step bound to its system's call."""

    def __init__(self, config: EnrichStep, call: StepCall, number: int, route: str) -> None:
        self.config = config
        self.number = number
        self._call = call
        self.cache = (None if config.cache is None
                      else AnswerCache(config.cache.ttl, config.cache.max_entries,
                                       config.cache.max_bytes))
        self._calls = {result: metrics.ENRICH_CALLS.labels(route, config.system, result)
                       for result in ("fetched", "cached", "failed")}
        self._seconds = metrics.ENRICH_SECONDS.labels(route, config.system)

    def run(self, envelope: Envelope, trace: Trace, payload: Any) -> Future[Any]:
        """A Future of the payload with this step's answer merged in; a request sent carries
        the headers ``trace`` gives."""
        try:
            prepared = self._call.prepare(envelope, payload)
        except Exception as exc:  # rendering is deterministic: trying again cannot help
            self._calls["failed"].inc()
            return failed(self.error(exc, retryable=False))
        if self.cache is not None:
            hit, value = self.cache.get(prepared.key)
            if hit:
                self._calls["cached"].inc()
                try:
                    return completed(self._merged(payload, value))
                except EnrichError as exc:
                    return failed(self.error(exc))
        try:
            fetching = self._call.fetch(prepared, trace())
        except Exception as exc:  # e.g. a pool closed under it: retried, never a lost message
            self._calls["failed"].inc()
            return failed(self.error(exc))
        result: Future[Any] = Future()
        fetching.add_done_callback(functools.partial(
            self._answered, payload, prepared, result, time.perf_counter()))
        return result

    def _answered(self, payload: Any, prepared: Prepared, result: Future[Any],
                  started: float, done: Future[Any]) -> None:
        self._seconds.observe(time.perf_counter() - started)
        error = done.exception()
        self._calls["failed" if error is not None else "fetched"].inc()
        if error is not None:
            result.set_exception(self.error(error))
            return
        try:
            value = selected(done.result(), self.config.select)
            if value is None and self.config.required:
                raise self._nothing()
            if self.cache is not None:
                self.cache.put(prepared.key, value)
            enriched = self._merged(payload, value)
        except BaseException as exc:  # a bug in a step costs its message, never the thread
            result.set_exception(self.error(exc))
            return
        result.set_result(enriched)

    def _merged(self, payload: Any, value: Any) -> Any:
        if value is None:  # not required (else it never got here): 'into' stays unset
            return payload
        return merged(payload, self.config.into, value)

    def _nothing(self) -> EnrichError:
        at = f" at {self.config.select!r}" if self.config.select else ""
        return EnrichError(
            f"answered nothing{at}; the record may not exist (yet): replay the message once it "
            f"does, or set required: false to go on without it", retryable=False)

    def error(self, cause: BaseException, retryable: bool = True) -> EnrichError:
        """The cause as an EnrichError naming this step and its system, classified as it was
        (an unclassified cause as ``retryable``)."""
        system = self.config.system
        where = f"enrich step {self.number} ({system})"
        details = {**getattr(cause, "details", {}), "system": system, "step": str(self.number)}
        if isinstance(cause, ProcessingError):
            message = str(cause)
            prefix = "" if message.startswith(where) else f"{where}: "
            return EnrichError(f"{prefix}{message}", retryable=bool(cause.retryable),
                               retry_after=getattr(cause, "retry_after", None), details=details)
        return EnrichError(f"{where} failed: {type(cause).__name__}", retryable=retryable,
                           details=details)


class Enrichment:
    """The steps of one route, before and after its mapping."""

    def __init__(self, steps: list[Step]) -> None:
        self.steps = steps
        self._before = [step for step in steps if not step.config.after_mapping]
        self._after = [step for step in steps if step.config.after_mapping]

    def process(self, envelope: Envelope, map_payload: Callable[[Any], Future[Any]],
                deliver: Callable[[Any], Future[T]], trace: Trace = no_trace) -> Future[T]:
        """Steps before, ``map_payload``, steps after, then ``deliver``: one Future for all."""
        future: Future[Any] = completed(envelope.data)
        for step in self._before:
            future = then(future, functools.partial(step.run, envelope, trace))
        future = then(future, map_payload)
        for step in self._after:
            future = then(future, functools.partial(step.run, envelope, trace))
        return then(future, deliver)

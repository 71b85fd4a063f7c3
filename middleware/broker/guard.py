"""Callbacks on the broker I/O loop never raise: an error costs one message, never the loop.

pika's IOLoop runs every callback (timers, frame handlers, hand-overs from other threads) on one
thread and lets an exception end that thread. It carries every broker connection of the
process, so one bad value used to silence the daemon while its flags still said "connected".
Every callback given to pika or to ``BrokerLoop`` is wrapped by ``guarded``: an exception is
logged through the masking logger, counted in ``silobridge_broker_callback_errors_total`` and
swallowed. Callbacks that own a message settle it themselves before it comes to that (fail its
Future, nack the delivery), so the guard is the last line, not the only one.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec

import structlog

from middleware import metrics

__all__ = ["WHERE", "guarded", "report"]

log = structlog.get_logger(__name__)

P = ParamSpec("P")

# The bounded label values of the metric: which kind of callback failed.
WHERE = ("scheduled", "publish", "confirm", "return", "deliver", "settle", "channel",
         "connection")
for _where in WHERE:  # exported at 0 from the start, so increase() has a series
    metrics.BROKER_CALLBACK_ERRORS.labels(_where)


def report(where: str, error: BaseException, *, trace: bool = True, **context: object) -> None:
    """Log and count one exception caught on the loop (the caller already contained it).

    ``trace=False`` for refusals that are not bugs (bad input): no traceback to read there.
    """
    metrics.BROKER_CALLBACK_ERRORS.labels(where).inc()
    log.error("error in a broker loop callback; the loop goes on", where=where,
              error=f"{type(error).__name__}: {error}", exc_info=error if trace else None,
              **context)


def guarded(where: str, fn: Callable[P, object]) -> Callable[P, None]:
    """``fn`` as a callback that reports and swallows any exception instead of raising it."""

    @functools.wraps(fn)
    def run(*args: P.args, **kwargs: P.kwargs) -> None:
        try:
            fn(*args, **kwargs)
        except Exception as exc:  # raising here would end the thread of every connection
            report(where, exc)

    return run

"""Callbacks on the broker I/O loop never raise: an error costs one message, never the loop.

pika's IOLoop runs every callback (timers, frame handlers, hand-overs from other threads) on one
thread and lets an exception end that thread. It carries every broker connection of the
process, so one bad value used to silence the daemon while its flags still said "connected".
Every callback given to pika or to ``BrokerLoop`` is wrapped by ``guarded``: an exception is
logged through the masking logger, counted in ``silobridge_broker_callback_errors_total`` and
swallowed. Callbacks that own a message settle it themselves before it comes to that (fail its
Future, nack the delivery), so the guard is the last line, not the only one.

The guard also times every callback, because a callback that blocks (a store call, a DNS
lookup, a file read) stalls every connection just as surely as one that raises, only silently.
One that runs longer than ``SLOW_AFTER`` is logged and counted in
``silobridge_broker_loop_slow_callbacks_total``; ``recording_blocks`` collects, for a test or a
diagnosis, every callback longer than a threshold of its choosing (a few milliseconds).
"""

from __future__ import annotations

import contextlib
import functools
import threading
import time
from collections.abc import Callable, Iterator
from typing import NamedTuple, ParamSpec

import structlog

from middleware import metrics

__all__ = ["SLOW_AFTER", "WHERE", "Blocked", "guarded", "recording_blocks", "report"]

log = structlog.get_logger(__name__)

P = ParamSpec("P")

# The bounded label values of the metric: which kind of callback failed.
WHERE = ("scheduled", "publish", "confirm", "return", "deliver", "settle", "channel",
         "connection")
for _where in WHERE:  # exported at 0 from the start, so increase() has a series
    metrics.BROKER_CALLBACK_ERRORS.labels(_where)
    metrics.BROKER_LOOP_SLOW_CALLBACKS.labels(_where)

SLOW_AFTER = 0.05
"""Seconds after which a callback counts as blocking the loop: far above any callback's work."""


class Blocked(NamedTuple):
    """One callback that held the loop longer than a recorder's threshold."""

    where: str
    name: str
    seconds: float


_recorders: list[tuple[float, list[Blocked]]] = []
_recorders_lock = threading.Lock()
_threshold = SLOW_AFTER  # the lowest threshold anyone watches: one comparison per callback


@contextlib.contextmanager
def recording_blocks(threshold: float) -> Iterator[list[Blocked]]:
    """Collect every guarded callback that runs longer than ``threshold`` seconds meanwhile."""
    global _threshold
    found: list[Blocked] = []
    entry = (threshold, found)
    with _recorders_lock:
        _recorders.append(entry)
        _threshold = min(SLOW_AFTER, *(t for t, _ in _recorders))
    try:
        yield found
    finally:
        with _recorders_lock:
            _recorders.remove(entry)
            _threshold = min([SLOW_AFTER, *(t for t, _ in _recorders)])


def _blocked(where: str, fn: Callable[..., object], seconds: float) -> None:
    name = getattr(fn, "__qualname__", repr(fn))
    with _recorders_lock:
        for threshold, found in _recorders:
            if seconds > threshold:
                found.append(Blocked(where, name, seconds))
    if seconds > SLOW_AFTER:
        metrics.BROKER_LOOP_SLOW_CALLBACKS.labels(where).inc()
        log.warning("a callback blocked the broker loop", where=where, callback=name,
                    seconds=round(seconds, 3))


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
        started = time.perf_counter()
        try:
            fn(*args, **kwargs)
        except Exception as exc:  # raising here would end the thread of every connection
            report(where, exc)
        took = time.perf_counter() - started
        if took > _threshold:
            _blocked(where, fn, took)

    return run

"""A failed message whose retry-tier or DLQ copy could not be published waits for the broker.

Before, such a message was nacked back to its queue at once. After a partition healed, the
consuming connection came back before the publishing one: each message failed at the target
(or was still failing), its copy could not be published ("not connected"), it was nacked, came
straight back and went round again, about twenty times in a second. On a quorum queue every
such return counts against ``x-delivery-limit``, so the message was dead-lettered or dropped by
the broker instead of retried: one event was lost in the full-size 60 s partition run.

Now the message stays unacked, holding its prefetch slot (as a message waiting for the store
does, see ``middleware.storecalls``), and the same copy is published again with capped backoff
(0.25 s doubling to 2 s) for as long as it takes; while the publisher is not connected a turn
only reschedules itself. No delivery count is spent, no attempt of the retry policy either, and
nothing is lost. The route's queue stops being drained while its prefetch window is full of
waiting messages, which is the back-pressure wanted. Only a worker that stops gives up: the
waiting messages are nacked back (``close``).

One thread per route, started on first use: a healthy route never starts it.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import Callable

import structlog

__all__ = ["BACKOFF", "CopyRetries"]

log = structlog.get_logger(__name__)

BACKOFF = (0.25, 2.0)  # first and longest wait between tries of one copy


class CopyRetries:
    """Runs each held message's next publish try after its backoff, on one thread."""

    def __init__(self, route: str, connected: Callable[[], bool],
                 backoff: tuple[float, float] = BACKOFF) -> None:
        self._route = route
        self._connected = connected
        self._first, self._longest = backoff
        # (due, order, tries, try again, give up): the order keeps equal due times FIFO
        self._due: list[tuple[float, int, int, Callable[[], None], Callable[[], None]]] = []
        self._order = itertools.count()
        self._cond = threading.Condition()
        self._closed = False
        self._thread: threading.Thread | None = None

    @property
    def waiting(self) -> int:
        """How many messages wait for their copy to be published (tests, shutdown)."""
        with self._cond:
            return len(self._due)

    def later(self, tries: int, again: Callable[[], None], give_up: Callable[[], None]) -> None:
        """Call ``again`` after the backoff for try ``tries`` (1, 2, ...) once the publisher is
        connected; ``give_up`` instead when the worker stops first."""
        delay = min(self._longest, self._first * 2 ** max(0, tries - 1))
        with self._cond:
            if not self._closed:
                heapq.heappush(self._due, (time.monotonic() + delay, next(self._order), tries,
                                           again, give_up))
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, daemon=True,
                                                    name=f"copy-retries-{self._route}")
                    self._thread.start()
                self._cond.notify()
                return
        give_up()

    def close(self) -> None:
        """Stop waiting: every held message is given up (nacked back to its queue)."""
        with self._cond:
            self._closed = True
            held, self._due = self._due, []
            self._cond.notify()
            thread = self._thread
        for *_, give_up in held:
            self._call(give_up)
        if thread is not None and thread is not threading.current_thread():
            thread.join(5)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._closed and (
                        not self._due or self._due[0][0] > time.monotonic()):
                    self._cond.wait(self._due[0][0] - time.monotonic() if self._due else None)
                if self._closed:
                    return
                _due, _order, tries, again, give_up = heapq.heappop(self._due)
            if self._connected():
                self._call(again)
            else:  # a publish now fails at once: wait again, at most the longest backoff
                self.later(tries + 1, again, give_up)

    def _call(self, callback: Callable[[], None]) -> None:
        try:
            callback()
        except Exception:  # the callbacks settle their message themselves; keep the thread
            log.exception("unexpected error while retrying a copy", route=self._route)

"""One thread that runs every callback of the in-memory broker, in order, with timers.

It stands in for pika's IOLoop: handlers run here (so the pipeline meets the same threading as
on RabbitMQ), other threads hand work over with ``call_soon``, and an exception in a callback is
reported and contained (``middleware.broker.guard``), never the end of the thread.
"""

from __future__ import annotations

import heapq
import itertools
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

from middleware.broker.guard import guarded

__all__ = ["Loop"]

T = TypeVar("T")

_STALE_AFTER = 5.0


class Loop:
    def __init__(self, name: str = "memory-broker") -> None:
        self._calls: queue.SimpleQueue[Callable[[], Any] | None] = queue.SimpleQueue()
        self._timers: list[tuple[float, int, Callable[[], Any]]] = []
        self._order = itertools.count()
        self._beat = time.monotonic()
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.thread.start()

    def in_loop(self) -> bool:
        return threading.get_ident() == self.thread.ident

    def turning(self) -> bool:
        return self.thread.is_alive() and time.monotonic() - self._beat < _STALE_AFTER

    def call_soon(self, fn: Callable[[], Any]) -> bool:
        if not self.thread.is_alive():
            return False
        self._calls.put(guarded("scheduled", fn))
        return True

    def call_later(self, delay: float, fn: Callable[[], Any]) -> None:
        """Only from the loop thread."""
        heapq.heappush(self._timers, (time.monotonic() + delay, next(self._order),
                                      guarded("scheduled", fn)))

    def run(self, fn: Callable[[], T], timeout: float = 10.0) -> T:
        """Run ``fn`` on the loop and return its result (or raise its error) to the caller."""
        if self.in_loop():
            return fn()
        done: Future[T] = Future()

        def call() -> None:
            try:
                done.set_result(fn())
            except BaseException as exc:  # handed to the caller, who raises it
                done.set_exception(exc)

        if not self.call_soon(call):
            raise RuntimeError("the memory broker's loop has stopped")
        return done.result(timeout)

    def stop(self) -> None:
        self._calls.put(None)
        if not self.in_loop():
            self.thread.join(5)

    def _run(self) -> None:
        while True:
            now = time.monotonic()
            self._beat = now
            while self._timers and self._timers[0][0] <= now:
                heapq.heappop(self._timers)[2]()
            wait = min(1.0, self._timers[0][0] - now) if self._timers else 1.0
            try:
                call = self._calls.get(timeout=max(0.0, wait))
            except queue.Empty:
                continue
            if call is None:
                return
            call()

"""A confirm Future for publishes made on the broker I/O loop thread itself: no lock, no Condition.

A worker whose target publishes to RabbitMQ (the AMQP target, retry and DLQ copies) publishes
from the loop thread, and the broker's confirm resolves the Future on that same thread. A
``concurrent.futures.Future`` pays for a ``Condition`` on creation and takes its lock in every
``add_done_callback``, ``set_result``, ``exception`` and ``result``: created, given a callback
and resolved, 7.0 us on this project's 2-vCPU machine against 1.0 us here (bench/RESULTS.md,
"Worker"), for cross-thread safety that such a Future never needs.

It stays a ``Future`` (a subclass) so every caller and type keeps working. What it gives up is
waiting: only the loop thread resolves it, and nothing may block on it (a wait from the loop
thread could never see the confirm, which arrives on that thread). ``result`` or ``exception``
on a pending one therefore raise instead of blocking, and ``concurrent.futures.wait`` is not
for it. Callbacks must be added on the loop thread, as the worker does right after publishing.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import CancelledError, Future, InvalidStateError
from typing import Any, TypeVar

import structlog

__all__ = ["LoopFuture"]

log = structlog.get_logger(__name__)

T = TypeVar("T")

_PENDING, _CANCELLED, _FINISHED = "PENDING", "CANCELLED", "FINISHED"


class LoopFuture(Future[T]):
    """A ``Future`` created, resolved and observed on the broker loop thread only."""

    def __init__(self) -> None:  # no super().__init__(): that builds the Condition we avoid
        self._state = _PENDING
        self._result: Any = None
        self._exception: BaseException | None = None
        self._done_callbacks: list[Callable[[Future[T]], object]] = []

    def __repr__(self) -> str:  # Future's own takes the Condition's lock
        return f"<LoopFuture {self._state.lower()}>"

    def done(self) -> bool:
        return self._state != _PENDING

    def cancelled(self) -> bool:
        return self._state == _CANCELLED

    def running(self) -> bool:
        return False

    def cancel(self) -> bool:
        if self._state == _FINISHED:
            return False
        if self._state == _PENDING:
            self._state = _CANCELLED
            self._call_back()
        return True

    def add_done_callback(self, fn: Callable[[Future[T]], object]) -> None:
        self._done_callbacks.append(fn)
        if self._state != _PENDING:  # settled already: run it now, guarded like the others
            self._call_back()

    def set_result(self, result: Any) -> None:
        if self._state != _PENDING:
            raise InvalidStateError(f"{self._state}: {self!r}")
        self._result, self._state = result, _FINISHED
        self._call_back()

    def set_exception(self, exception: BaseException | None) -> None:
        if self._state != _PENDING:
            raise InvalidStateError(f"{self._state}: {self!r}")
        self._exception, self._state = exception, _FINISHED
        self._call_back()

    def exception(self, timeout: float | None = None) -> BaseException | None:
        self._settled_or_raise()
        return self._exception

    def result(self, timeout: float | None = None) -> T:
        self._settled_or_raise()
        if self._exception is not None:
            raise self._exception
        return self._result

    def _settled_or_raise(self) -> None:
        if self._state == _CANCELLED:
            raise CancelledError()
        if self._state == _PENDING:
            raise InvalidStateError("a loop-thread confirm cannot be waited for; add a callback")

    def _call_back(self) -> None:
        """Run the callbacks; like ``Future``, one that raises does not stop the others (the
        worker's own callbacks are guarded and settle their message before it comes to this)."""
        callbacks, self._done_callbacks = self._done_callbacks, []
        for callback in callbacks:
            try:
                callback(self)
            except Exception:
                log.exception("a confirm callback raised")


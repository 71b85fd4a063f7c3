"""Publishing from the ingress event loop in bursts, with one thread wake-up per burst each way.

The broker connection lives on its own I/O thread. Handing each request's envelope over
separately wakes that thread once per request, and resolving each confirm separately wakes the
event loop once per request; every wake-up is a system call during which the other thread takes
the GIL, and the two threads then trade it back and forth. Under load that ping-pong costs more
than the request itself (py-spy on ``bench/ingress.py``). So envelopes published during one
event-loop iteration are handed over together, and confirms that arrive together are delivered
to the loop with one ``call_soon_threadsafe``. Nothing is acknowledged earlier than before: each
request still awaits the broker confirm of every one of its envelopes.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import threading
from collections import deque
from concurrent.futures import Future

from middleware.adapter import AdapterContext
from middleware.broker.ingest import publish_envelope
from middleware.envelope import Envelope
from middleware.errors import BrokerError

__all__ = ["LoopPublisher"]

_Item = tuple[Envelope, "asyncio.Future[None]"]


class LoopPublisher:
    """``publish`` (on the event loop) returns an asyncio Future resolved by the confirm."""

    def __init__(self, context: AdapterContext) -> None:
        self._context = context
        self._loop: asyncio.AbstractEventLoop | None = None
        self._outgoing: list[_Item] = []
        self._confirmed: deque[tuple[Future[None], asyncio.Future[None]]] = deque()
        self._lock = threading.Lock()
        self._drain_scheduled = False

    def publish(self, envelope: Envelope) -> asyncio.Future[None]:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # the ingress runs one loop for its lifetime; tests more
            self._adopt(loop)
        waiter: asyncio.Future[None] = loop.create_future()
        if not self._outgoing:
            loop.call_soon(self._hand_over)
        self._outgoing.append((envelope, waiter))
        return waiter

    def _adopt(self, loop: asyncio.AbstractEventLoop) -> None:
        """Serve ``loop`` from now on; what was queued for a previous (closed) loop has no
        waiter left."""
        with self._lock:
            self._loop = loop
            self._outgoing = []
            self._confirmed.clear()
            self._drain_scheduled = False

    def _hand_over(self) -> None:
        """Every envelope of this loop iteration, in one go (the publisher wakes its thread once
        for a burst)."""
        batch, self._outgoing = self._outgoing, []
        publisher = self._context.publisher
        for envelope, waiter in batch:
            try:
                confirm = publish_envelope(publisher, envelope)
            except Exception as exc:  # any failure means "not stored": the sender gets 503
                waiter.set_exception(BrokerError(str(exc)))
                continue
            confirm.add_done_callback(functools.partial(self._arrived, waiter=waiter))

    def _arrived(self, confirm: Future[None], *, waiter: asyncio.Future[None]) -> None:
        """Broker thread: queue the outcome; wake the loop only if no wake-up is pending."""
        assert self._loop is not None
        with self._lock:
            self._confirmed.append((confirm, waiter))
            if self._drain_scheduled:
                return
            self._drain_scheduled = True
        with contextlib.suppress(RuntimeError):  # the loop closed at shutdown: nobody waits
            self._loop.call_soon_threadsafe(self._drain)

    def _drain(self) -> None:
        with self._lock:
            items = list(self._confirmed)
            self._confirmed.clear()
            self._drain_scheduled = False
        for confirm, waiter in items:
            if waiter.done():  # the request gave up waiting (timeout)
                continue
            error = confirm.exception()
            if error is None:
                waiter.set_result(None)
            else:
                waiter.set_exception(error)

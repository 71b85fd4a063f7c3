"""One writer thread that turns single submissions into batches.

The worker hands the target one message at a time and must never wait for the database, so
``submit`` only queues. The thread takes the first item, waits up to ``max_wait_ms`` for more
(or until ``max_rows`` are there) and passes the lot to ``write``, which settles each item on
its own. A daily batch of 10,000 records becomes 20 statements of 500 rows, not 10,000 round
trips; a lone webhook waits at most ``max_wait_ms``.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

import structlog

from adapters.sql.config import BatchConfig

__all__ = ["Batcher"]

log = structlog.get_logger(__name__)

T = TypeVar("T")

_STOP = object()


class Batcher(Generic[T]):
    """Collects items on its own thread; ``write`` runs there and must settle every item."""

    def __init__(self, name: str, batch: BatchConfig, write: Callable[[list[T]], None],
                 limit: int = 0) -> None:
        self._batch = batch
        self._write = write
        self._items: queue.Queue[object] = queue.Queue(limit)
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def submit(self, item: T) -> bool:
        """Queue an item; False when the queue is at its limit (never blocks)."""
        try:
            self._items.put_nowait(item)
        except queue.Full:
            return False
        return True

    def close(self, timeout: float = 30.0) -> None:
        """Write what is queued, then end the thread."""
        if self._thread.is_alive():
            self._items.put(_STOP)
            self._thread.join(timeout)

    def _run(self) -> None:
        stopping = False
        while not stopping:
            first = self._items.get()
            if first is _STOP:
                return
            items: list[T] = [first]  # type: ignore[list-item]
            deadline = time.monotonic() + self._batch.max_wait_ms / 1000
            while len(items) < self._batch.max_rows:
                try:
                    item = self._items.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if item is _STOP:
                    stopping = True
                    break
                items.append(item)  # type: ignore[arg-type]
            try:
                self._write(items)
            except Exception:  # write settles its items itself; a bug must not end the thread
                log.exception("sql batch write failed unexpectedly", thread=self._thread.name)

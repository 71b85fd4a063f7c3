"""One route's store I/O on threads of its own: never on the broker I/O loop or an HTTP loop.

The broker loop carries every connection of the process and a REST target's aiohttp loop every
request to that target, so a store call there (a lookup of a redelivered id, an xref lookup or
capture, the commit of idempotency records before the acks) stalls everything they serve, and
an exception there used to end the thread. Each route worker owns a small thread pool instead
(``threads``, default 4); the loop hands the work over and gets the outcome back through the
message's own callbacks (``Delivery.ack`` and the batch commit's Future are thread-safe).

A store fault is transient: a call that fails with anything but a deliberate permanent error
(an xref conflict: bad data, not a bad store) waits and is tried again with capped backoff
(0.1 s doubling to 5 s) on its pool thread, for as long as it takes. The message keeps waiting
unacked in the meantime, holding its prefetch slot, so the queue stops being drained instead of
being dead-lettered or requeued in a loop: nothing is lost, no retry attempt and no
``x-delivery-limit`` count is spent, and everything moves again by itself once the store
answers. Only a worker that stops gives up waiting (``StoreUnavailable``, nacked back).
"""

from __future__ import annotations

import contextlib
import functools
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Generic, TypeVar

import structlog

from middleware.errors import SilobridgeError, StoreUnavailable
from middleware.storehealth import StoreHealth

__all__ = ["BACKOFF", "Batches", "GroupCommit", "StoreCalls", "all_done", "is_fault"]

log = structlog.get_logger(__name__)

T = TypeVar("T")
B = TypeVar("B")
Record = tuple[str, str]

BACKOFF = (0.1, 5.0)  # first and longest wait between tries of a failing store call


def is_fault(error: BaseException) -> bool:
    """A failure of the store itself (retry), not a permanent answer about the data (raise)."""
    return not isinstance(error, SilobridgeError) or bool(getattr(error, "retryable", False))


class StoreCalls:
    """A route's pool for store work; ``call`` retries faults until the store answers.

    The threads start with the worker, not on first use: ``ThreadPoolExecutor`` starts a thread
    inside ``submit`` and waits for it to run, which took up to 100 ms on the broker loop of a
    busy machine. Handing work over is one put on a queue.
    """

    def __init__(self, route: str, health: StoreHealth, threads: int = 4) -> None:
        self._route = route
        self._health = health
        self._work: queue.SimpleQueue[Callable[[], object] | None] = queue.SimpleQueue()
        self._closing = threading.Event()
        self._threads = [threading.Thread(target=self._serve, name=f"store-{route}-{n}",
                                          daemon=True) for n in range(threads)]
        for thread in self._threads:
            thread.start()

    def submit(self, fn: Callable[[], object]) -> bool:
        """Run ``fn`` on the pool; False when the worker is closing (the caller requeues)."""
        if self._closing.is_set():
            return False
        self._work.put(fn)
        return True

    def _serve(self) -> None:
        while (fn := self._work.get()) is not None:
            try:
                fn()
            except Exception:  # callers settle their message themselves; this is a bug
                log.exception("unexpected error in a store thread", route=self._route)

    def call(self, store: str, operation: str, fn: Callable[[], T]) -> T:
        """``fn()`` on this pool thread, tried again after each store fault until it succeeds.

        Raises what ``fn`` raises when that is permanent, and ``StoreUnavailable`` when the
        worker closes while the store still fails.
        """
        delay, counted = BACKOFF[0], False
        with contextlib.ExitStack() as waiting:  # from the first fault to success or giving up
            while True:
                try:
                    return fn()
                except Exception as exc:
                    if not is_fault(exc):
                        raise
                    self._health.failed(store, operation, exc)
                    if not counted:
                        waiting.enter_context(self._health.waiting())
                        counted = True
                    if self._closing.wait(delay):
                        raise StoreUnavailable(
                            f"route {self._route}: stopped while the {store} store failed "
                            f"({operation}); the message goes back to its queue") from exc
                    delay = min(delay * 2, BACKOFF[1])

    def close(self) -> None:
        """Stop waiting for a failing store and let the running calls end (shutdown)."""
        self._closing.set()
        for _thread in self._threads:
            self._work.put(None)
        for thread in self._threads:
            thread.join()


class Batches(Generic[B]):
    """Items gathered from any thread and handed to ``run`` in batches on the route's pool.

    At most one batch runs at a time; what arrives meanwhile waits and goes as the next one,
    so a batch is as large as what arrived during the last one (no timer: a lone item goes at
    once). ``refuse`` gets the items the pool no longer takes (the worker is stopping). The
    group commit below and the ordered routes' batch admission (``middleware.admission``)
    both gather this way.
    """

    def __init__(self, submit: Callable[[Callable[[], None]], bool],
                 run: Callable[[list[B]], None], refuse: Callable[[list[B]], None]) -> None:
        self._submit = submit  # ``StoreCalls.submit``
        self._run = run
        self._refuse = refuse
        self._lock = threading.Lock()
        self._waiting: list[B] = []
        self._running = False

    def add(self, item: B) -> None:
        with self._lock:
            self._waiting.append(item)
            start, self._running = not self._running, True
        if start and not self._submit(self._drain):
            with self._lock:
                refused, self._waiting, self._running = self._waiting, [], False
            self._refuse(refused)

    def _drain(self) -> None:
        while True:
            with self._lock:
                batch, self._waiting = self._waiting, []
                if not batch:
                    self._running = False
                    return
            self._run(batch)


Commit = tuple[list[Record], "Future[None]"]


class GroupCommit:
    """Idempotency records committed one transaction at a time per route, on the route's pool.

    While one commit runs, the records that arrive meanwhile gather and go in the next one
    (``Batches``), so a busy route commits few large transactions rather than one per
    consumer batch.
    """

    def __init__(self, calls: StoreCalls, record_many: Callable[[list[Record]], None]) -> None:
        self._calls = calls
        self._record_many = record_many
        self._lock = threading.Lock()
        self._batches: Batches[Commit] = Batches(calls.submit, self._commit, self._refused)
        self.uncommitted = 0  # records handed over and not yet durable (or given up)

    def commit(self, records: list[Record]) -> Future[None]:
        """A Future that completes once ``records`` are durable (or failed for good)."""
        future: Future[None] = Future()
        with self._lock:
            self.uncommitted += len(records)
        self._batches.add((records, future))
        return future

    def _commit(self, batch: list[Commit]) -> None:
        records = [record for part, _ in batch for record in part]
        error: BaseException | None = None
        try:
            self._calls.call("idempotency", "record_many",
                             functools.partial(self._record_many, records))
        except Exception as exc:  # given up (stopping) or refused: those messages come back
            error = exc
        self._finish(batch, error)

    def _refused(self, batch: list[Commit]) -> None:
        self._finish(batch, StoreUnavailable("the route is stopping; records not committed"))

    def _finish(self, batch: list[Commit], error: BaseException | None) -> None:
        with self._lock:
            self.uncommitted -= sum(len(records) for records, _ in batch)
        for _, future in batch:
            if error is None:
                future.set_result(None)
            else:
                future.set_exception(error)


def all_done(futures: list[Future[None]]) -> Future[None]:
    """One Future for several: done when all are, failed with the first failure."""
    combined: Future[None] = Future()
    remaining = [len(futures)]
    lock = threading.Lock()

    def one_done(done: Future[None]) -> None:
        with lock:
            remaining[0] -= 1
            last = remaining[0] == 0
        if last:
            errors = [f.exception() for f in futures if f.exception() is not None]
            if errors:
                combined.set_exception(errors[0])
            else:
                combined.set_result(None)

    if not futures:
        combined.set_result(None)
    for future in futures:
        future.add_done_callback(one_done)
    return combined

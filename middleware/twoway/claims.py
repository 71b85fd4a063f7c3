"""The ``begin`` of a route's events asked of the store together, one round trip per batch.

Every event of a synced route passes ``SyncStore.begin`` before mapping. Asked one at a time,
each event paid its own store round trip (and, on PostgreSQL with synchronous commit, its own
WAL flush), and those trips bounded an ordered route at 0.38-0.61 of an unordered one's rate
(bench/ordering.py). So the route's store threads ask together, like the group commit of
idempotency records (``middleware.storecalls.GroupCommit``): while one batch is in the store,
the events that arrive meanwhile gather, and the first of them takes the next batch there.
No timer: a lone event goes at once, and a batch is as large as what arrived during the last
round trip.

The store decides a batch as if its events came one after the other (``begin_many``), so the
guarantees are those of ``begin``. A batch the store refuses is asked again event by event,
each on its own thread with the usual waiting and retrying (``StoreCalls.call``): an event the
store cannot take, or a store outage, holds only its own thread, as before batching.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from middleware.stores.base import SyncStore

__all__ = ["Claims"]

Call = Callable[[str, str, Callable[[], Any]], Any]
Item = tuple[str, int, str]  # subject, version, holder (the envelope id)


class _Asking:
    """One event's question, and how its thread learns the answer."""

    __slots__ = ("alone", "answered", "failed", "item", "leads", "verdict")

    def __init__(self, item: Item) -> None:
        self.item = item
        self.verdict = ""
        self.leads = False  # this thread takes the next batch to the store
        self.alone = False  # the batch failed: ask for this event alone
        self.answered = threading.Event()


class Claims:
    """``begin`` for one route's events, batched across the route's store threads."""

    def __init__(self, route: str, store: SyncStore, call: Call, ttl: float,
                 claim: bool) -> None:
        self._route = route
        self._store = store
        self._call = call
        self._ttl = ttl
        self._claim = claim
        self._lock = threading.Lock()
        self._waiting: list[_Asking] = []
        self._busy = False  # a batch is in the store

    def begin(self, subject: str, version: int, holder: str, takeover: bool = False) -> str:
        """'go', 'stale' or 'held', as ``SyncStore.begin``; blocks this (store) thread.

        A ``takeover`` (a redelivered, replayed or retry copy, rare) is asked alone: a batch
        is decided under one takeover rule."""
        if takeover:
            return str(self._call("sync", "begin", lambda: self._store.begin(
                self._route, subject, version, holder, self._ttl, self._claim, True)))
        return self.begin_all([(subject, version, holder)])[0]

    def begin_all(self, items: list[Item]) -> list[str]:
        """``begin`` of several events of one thread, asked together (none a takeover): the
        worker's batch admission asks for what one I/O tick delivered in one call."""
        askings = [_Asking(item) for item in items]
        with self._lock:
            self._waiting.extend(askings)  # at once: one batch takes them all
            if askings and not self._busy:
                self._busy = askings[0].leads = True
        return [self._answer(asking) for asking in askings]

    def _answer(self, asking: _Asking) -> str:
        if not asking.leads:
            asking.answered.wait()
        if asking.leads:  # first, or handed the lead by the batch before
            self._ask_batch()
        if asking.alone:
            subject, version, holder = asking.item
            return str(self._call("sync", "begin", lambda: self._store.begin(
                self._route, subject, version, holder, self._ttl, self._claim)))
        return asking.verdict

    def _ask_batch(self) -> None:
        with self._lock:
            batch, self._waiting = self._waiting, []
        try:
            verdicts = self._store.begin_many(self._route, [a.item for a in batch], self._ttl,
                                              self._claim)
        except Exception:  # asked again one by one, each waiting out faults on its own
            for asking in batch:
                asking.alone = True
        else:
            for asking, verdict in zip(batch, verdicts, strict=True):
                asking.verdict = verdict
        with self._lock:
            after = self._waiting[0] if self._waiting else None
            if after is None:
                self._busy = False
            else:
                after.leads = True
        if after is not None:
            after.answered.set()
        for asking in batch:
            asking.answered.set()

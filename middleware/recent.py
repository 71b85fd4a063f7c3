"""The in-memory set of recently delivered envelope ids of a route (``middleware.pipeline``)."""

from __future__ import annotations

import threading
from collections import deque

__all__ = ["RECENT_IDS", "RecentIds"]

RECENT_IDS = 100_000  # 100 s of traffic at 1,000 events/s; RSS grew ~15 MiB as it filled


class RecentIds:
    """A bounded set that forgets its oldest entries first.

    A set for membership and a deque for the order, both O(1). An insertion-ordered dict that
    drops ``next(iter(d))`` looks the same but is not: the deleted slots at the front of the
    dict stay until it is resized and every ``next(iter(d))`` walks over them, so once full each
    add cost ~55 µs instead of ~0.5 µs (100,000 ids), after the first 100 s of a busy route.
    """

    def __init__(self, size: int) -> None:
        self._size = size
        self._ids: set[str] = set()
        self._order: deque[str] = deque()
        self._lock = threading.Lock()  # added to from adapters' threads too

    def __contains__(self, item: str) -> bool:
        return item in self._ids

    def add(self, item: str) -> None:
        with self._lock:
            if item in self._ids:
                return
            self._ids.add(item)
            self._order.append(item)
            if len(self._order) > self._size:
                self._ids.discard(self._order.popleft())

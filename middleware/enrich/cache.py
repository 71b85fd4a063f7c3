"""Answers of one enrich step kept for a short while, so a burst of events about the same record
asks its system once.

``cachetools.TTLCache`` bounds the age of answers (``ttl``) and their total size
(``max_bytes``, measured as the request key plus the answer as JSON), and a count on top
(``max_entries``); the least recently used go first, and an answer larger than the whole budget
is not kept. A count alone would not bound memory: an answer may be up to a system's
``max_response_bytes``. The cache is not thread-safe, and steps run on the consumer thread and
on the systems' threads, hence the lock. Only answers are kept, never failures: a 503 must be
asked again, not remembered.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import orjson
from cachetools import TTLCache

__all__ = ["AnswerCache"]

_MISSING = object()


class AnswerCache:
    def __init__(self, ttl: float, max_entries: int, max_bytes: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._answers: TTLCache[str, tuple[Any, int]] = TTLCache(
            maxsize=max_bytes, ttl=ttl, timer=clock, getsizeof=lambda entry: entry[1])
        self._max_entries = max_entries
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: str) -> tuple[bool, Any]:
        """(True, answer) when a fresh answer is kept for the key, else (False, None)."""
        with self._lock:
            entry = self._answers.get(key, _MISSING)
            if entry is _MISSING:
                self.misses += 1
                return False, None
            self.hits += 1
            return True, entry[0]  # type: ignore[index]

    def put(self, key: str, answer: Any) -> None:
        size = len(key) + len(orjson.dumps(answer, default=str))
        with self._lock:
            try:
                self._answers[key] = (answer, size)
            except ValueError:  # larger than the whole budget: not kept
                return
            while len(self._answers) > self._max_entries:
                self._answers.popitem()

    @property
    def size(self) -> int:
        """Bytes the kept answers count for."""
        with self._lock:
            return int(self._answers.currsize)

    def __len__(self) -> int:
        with self._lock:
            return len(self._answers)

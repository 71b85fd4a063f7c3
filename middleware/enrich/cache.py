"""Answers of one enrich step kept for a short while, so a burst of events about the same record
asks its system once.

``cachetools.TTLCache`` bounds both the age (``ttl``) and the number of answers
(``max_entries``, least recently used out first); it is not thread-safe, and steps run on the
consumer thread and on the systems' threads, hence the lock. Only answers are kept, never
failures: a 503 must be asked again, not remembered.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from cachetools import TTLCache

__all__ = ["AnswerCache"]

_MISSING = object()


class AnswerCache:
    def __init__(self, ttl: float, max_entries: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._answers: TTLCache[str, Any] = TTLCache(maxsize=max_entries, ttl=ttl, timer=clock)
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: str) -> tuple[bool, Any]:
        """(True, answer) when a fresh answer is kept for the key, else (False, None)."""
        with self._lock:
            answer = self._answers.get(key, _MISSING)
            if answer is _MISSING:
                self.misses += 1
                return False, None
            self.hits += 1
            return True, answer

    def put(self, key: str, answer: Any) -> None:
        with self._lock:
            self._answers[key] = answer

    def __len__(self) -> int:
        with self._lock:
            return len(self._answers)

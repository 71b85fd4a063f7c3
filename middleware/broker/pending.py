"""Commits in progress on a consumer's loop, so that ``stop`` can wait for their acks.

Both consumers (RabbitMQ's and the in-memory one) hold an ack whose idempotency records are
still being committed; closing before the commit finished dropped the ack and the broker gave
the message to the next consumer, already delivered. Used only on the consumer's loop thread.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["PendingCommits"]


class PendingCommits:
    def __init__(self) -> None:
        self._count = 0
        self._waiters: list[Callable[[], None]] = []

    def started(self) -> None:
        self._count += 1

    def finished(self) -> None:
        self._count -= 1
        if not self._count:
            waiters, self._waiters = self._waiters, []
            for waiter in waiters:
                waiter()

    def when_idle(self, callback: Callable[[], None]) -> None:
        """``callback`` once no commit is in progress (at once when none is)."""
        if self._count:
            self._waiters.append(callback)
        else:
            callback()

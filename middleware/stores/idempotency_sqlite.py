"""Idempotency records and ingress claims in the embedded SQLite file.

Claims run in a ``BEGIN IMMEDIATE`` transaction: the write lock is taken before anything is
read, so two processes on one file (or two threads, which also share the store's lock) decide
one key one after the other, and exactly one of them inserts it.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

from middleware.stores.base import Claim
from middleware.stores.sqlite import connect

__all__ = ["SqliteIdempotencyStore"]

_CLAIM = (
    "INSERT INTO delivered (route, message_id, at, state, owner) VALUES (?, ?, ?, 'pending', ?)"
    " ON CONFLICT (route, message_id) DO UPDATE SET at = excluded.at, owner = excluded.owner"
    " WHERE state = 'pending' AND at < ?"
)
RECORDS_DONE = (  # also part of the sync store's group commit (sync_sqlite)
    "INSERT INTO delivered (route, message_id, at, state) VALUES (?, ?, ?, 'done')"
    " ON CONFLICT (route, message_id) DO UPDATE SET state = 'done', owner = NULL"
)


class SqliteIdempotencyStore:
    """``IdempotencyStore`` on SQLite; thread-safe through one lock around one connection."""

    def __init__(self, path: Path) -> None:
        self._db = connect(path)
        self._lock = threading.Lock()

    def seen(self, route: str, message_id: str) -> bool:
        with self._lock:
            row = self._db.execute(
                "SELECT 1 FROM delivered WHERE route = ? AND message_id = ? AND state = 'done'",
                (route, message_id),
            ).fetchone()
        return row is not None

    def record_many(self, records: list[tuple[str, str]]) -> None:
        now = time.time()
        with self._lock, self._db:
            self._db.execute("BEGIN")
            self._db.executemany(RECORDS_DONE, [(route, ident, now) for route, ident in records])

    def claim(self, namespace: str, keys: Sequence[str], stale_after: float) -> Claim:
        now = time.time()
        claim = Claim(uuid.uuid4().hex)
        with self._lock, self._db:
            self._db.execute("BEGIN IMMEDIATE")
            for key in dict.fromkeys(keys):
                if self._db.execute(_CLAIM, (namespace, key, now, claim.owner,
                                             now - stale_after)).rowcount:
                    claim.won.append(key)
                    continue
                row = self._db.execute(
                    "SELECT state FROM delivered WHERE route = ? AND message_id = ?",
                    (namespace, key)).fetchone()
                (claim.done if row is not None and row[0] == "done" else claim.pending).append(key)
        return claim

    def confirm(self, namespace: str, keys: Sequence[str]) -> None:
        self.record_many([(namespace, key) for key in keys])

    def release(self, namespace: str, keys: Sequence[str], owner: str) -> None:
        with self._lock, self._db:
            self._db.execute("BEGIN")
            self._db.executemany(
                "DELETE FROM delivered WHERE route = ? AND message_id = ? AND owner = ?"
                " AND state = 'pending'", [(namespace, key, owner) for key in keys])

    def prune(self, before: float, chunk: int = 5000) -> int:
        """Delete in chunks, so the workers' commits never wait long for the lock."""
        deleted = 0
        while True:
            with self._lock:
                count = self._db.execute(
                    "DELETE FROM delivered WHERE (route, message_id) IN (SELECT route, "
                    "message_id FROM delivered WHERE at < ? LIMIT ?)", (before, chunk),
                ).rowcount
            deleted += count
            if count < chunk:
                return deleted

    def close(self) -> None:
        with self._lock:
            self._db.close()

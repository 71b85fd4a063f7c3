"""Leases in the embedded SQLite file (one process, or several on one host sharing the file).

Every call runs in a ``BEGIN IMMEDIATE`` transaction, so reading the row and writing it happen
under the file's write lock: two processes asking at once are decided one after the other.
Expiry times come from this host's clock, which every process on the file shares.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from middleware.stores.sqlite import connect

__all__ = ["SqliteLeaseStore"]

_TAKE = (
    "INSERT INTO lease (name, holder, expires_at) VALUES (?, ?, ?)"
    " ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at"
    " WHERE lease.holder = excluded.holder OR lease.expires_at <= ?"
)


class SqliteLeaseStore:
    """``LeaseStore`` on SQLite; thread-safe through one lock around one connection."""

    def __init__(self, path: Path) -> None:
        self._db = connect(path)
        self._lock = threading.Lock()

    def acquire(self, name: str, holder: str, ttl: float) -> bool:
        now = time.time()
        with self._lock, self._db:
            self._db.execute("BEGIN IMMEDIATE")
            return bool(self._db.execute(_TAKE, (name, holder, now + ttl, now)).rowcount)

    def release(self, name: str, holder: str) -> None:
        with self._lock, self._db:
            self._db.execute("BEGIN")
            self._db.execute("DELETE FROM lease WHERE name = ? AND holder = ?", (name, holder))

    def holder(self, name: str) -> tuple[str, float] | None:
        now = time.time()
        with self._lock:
            row = self._db.execute("SELECT holder, expires_at FROM lease WHERE name = ?"
                                   " AND expires_at > ?", (name, now)).fetchone()
        return None if row is None else (str(row[0]), float(row[1]) - now)

    def put_if_held(self, name: str, holder: str, key: str, value: str) -> bool:
        with self._lock, self._db:
            self._db.execute("BEGIN IMMEDIATE")
            held = self._db.execute("SELECT 1 FROM lease WHERE name = ? AND holder = ?"
                                    " AND expires_at > ?", (name, holder, time.time())).fetchone()
            if held is None:
                return False
            self._db.execute("INSERT INTO state VALUES (?, ?) ON CONFLICT(name) DO UPDATE"
                             " SET value = excluded.value", (key, value))
            return True

    def close(self) -> None:
        with self._lock:
            self._db.close()

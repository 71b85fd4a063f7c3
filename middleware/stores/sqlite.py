"""Embedded SQLite stores for idempotency records and small state (poller watermarks).

One file per daemon, WAL mode so readers never wait for the writer. Commits are durable against
a process crash (synchronous=NORMAL), which is what at-least-once processing needs.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

__all__ = ["SqliteIdempotencyStore", "SqliteStateStore", "connect"]


def connect(path: Path) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    connection = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=NORMAL")
    connection.execute("PRAGMA busy_timeout=5000")
    return connection


class SqliteIdempotencyStore:
    """Delivered envelope ids per route; thread-safe through one lock around one connection."""

    def __init__(self, path: Path) -> None:
        self._db = connect(path)
        self._lock = threading.Lock()
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS delivered ("
            " route TEXT NOT NULL, message_id TEXT NOT NULL, at REAL NOT NULL,"
            " PRIMARY KEY (route, message_id)) WITHOUT ROWID"
        )
        self._db.execute("CREATE INDEX IF NOT EXISTS delivered_at ON delivered (at)")

    def seen(self, route: str, message_id: str) -> bool:
        with self._lock:
            row = self._db.execute(
                "SELECT 1 FROM delivered WHERE route = ? AND message_id = ?", (route, message_id)
            ).fetchone()
        return row is not None

    def record_many(self, records: list[tuple[str, str]]) -> None:
        now = time.time()
        with self._lock, self._db:
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT OR IGNORE INTO delivered VALUES (?, ?, ?)",
                [(route, message_id, now) for route, message_id in records],
            )

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


class SqliteStateStore:
    """Named string values, e.g. ``poller:erp-products:watermark``."""

    def __init__(self, path: Path) -> None:
        self._db = connect(path)
        self._lock = threading.Lock()
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS state (name TEXT PRIMARY KEY, value TEXT NOT NULL)"
        )

    def get(self, name: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT value FROM state WHERE name = ?", (name,)).fetchone()
        return None if row is None else str(row[0])

    def put(self, name: str, value: str) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO state VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET value = ?",
                (name, value, value),
            )

    def close(self) -> None:
        with self._lock:
            self._db.close()

"""The embedded SQLite file: connections, schema migrations and the state store.

One file per daemon, WAL mode so readers never wait for the writer. Commits are durable against
a process crash (synchronous=NORMAL), which is what at-least-once processing needs. Each store
keeps its own connection behind its own lock; the schema is migrated once, before any store
opens (``migrate_sqlite``).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

from middleware.stores.migrations import MIGRATIONS, MigrationReport, SchemaTooNew, latest_version

__all__ = ["SqliteStateStore", "connect", "migrate_sqlite"]


def connect(path: Path) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    connection = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=NORMAL")
    connection.execute("PRAGMA busy_timeout=5000")
    return connection


def migrate_sqlite(path: Path, attempts: int = 20) -> MigrationReport:
    """Apply the missing migrations in one ``BEGIN IMMEDIATE`` transaction.

    The immediate transaction takes the file's write lock before the version is read, so a
    second process starting at the same moment waits (busy timeout) and then finds nothing to
    do; a failing step rolls everything back, leaving the previous version intact. Switching a
    new file to WAL needs the file to itself and can answer "database is locked" at once, without
    waiting for the busy timeout, when processes start together: that is retried.
    """
    for attempt in range(1, attempts):
        try:
            return _migrate_sqlite(path)
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc):
                raise
            time.sleep(0.05 * attempt)
    return _migrate_sqlite(path)


def _migrate_sqlite(path: Path) -> MigrationReport:
    db = connect(path)
    try:
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute("CREATE TABLE IF NOT EXISTS schema_version ("
                       " version INTEGER PRIMARY KEY, applied_at REAL NOT NULL)")
            before = int(db.execute(
                "SELECT coalesce(max(version), 0) FROM schema_version").fetchone()[0])
            if before > latest_version():
                raise SchemaTooNew(str(path), before, latest_version())
            applied = []
            for migration in MIGRATIONS:
                if migration.version > before:
                    for statement in migration.sqlite:
                        db.execute(statement)
                    db.execute("INSERT INTO schema_version VALUES (?, ?)",
                               (migration.version, time.time()))
                    applied.append(migration.version)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
    finally:
        db.close()
    return MigrationReport(before, max(before, latest_version()), tuple(applied))


class SqliteStateStore:
    """Named string values, e.g. ``poller:erp-products:watermark``."""

    def __init__(self, path: Path) -> None:
        self._db = connect(path)
        self._lock = threading.Lock()

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

    def probe(self) -> None:
        """Take the file's write lock and let it go: fails on a read-only, locked (past the busy
        timeout), vanished or corrupt file, and writes nothing (a full disk is seen by writes)."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute("ROLLBACK")

    def close(self) -> None:
        with self._lock:
            self._db.close()

"""Cross-references in the embedded SQLite file: the default when one daemon runs.

Each link is one row in a canonical order (the smaller namespace first), with a unique index
each way, so ``crm.customer:C-1001`` links to at most one ``erp.account`` and that account to at
most one customer; a lookup from either side reads the same row. The table is created by the
schema migrations (``middleware.stores.migrations``), which run before any store opens.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from middleware.errors import ProcessingError
from middleware.stores.base import XrefImport, XrefLink
from middleware.stores.sqlite import connect
from middleware.stores.xref_rules import canonical, conflict, judge_import, listing_filter

__all__ = ["SqliteXrefStore"]


class SqliteXrefStore:
    """``XrefStore`` on SQLite; thread-safe through one lock around one WAL connection."""

    def __init__(self, path: str | Path) -> None:
        self._lock = threading.Lock()
        try:
            self._db = connect(Path(path))
        except sqlite3.Error as exc:
            raise ProcessingError(f"cannot open the xref store: {exc}", retryable=True) from exc

    def lookup(self, from_ns: str, key: str, to_ns: str) -> str | None:
        try:
            with self._lock:
                return _lookup(self._db, from_ns, key, to_ns)
        except sqlite3.Error as exc:
            raise ProcessingError(f"xref store error ({type(exc).__name__}); will retry",
                                  retryable=True) from exc

    def link(self, ns_a: str, key_a: str, ns_b: str, key_b: str) -> None:
        """Store a pair; the same pair again is a no-op, a contradicting one an error."""
        row = canonical(ns_a, key_a, ns_b, key_b)
        if self._run("INSERT INTO xref VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                     row).rowcount:
            return
        if self.lookup(ns_a, key_a, ns_b) != key_b:
            raise conflict(self.lookup, ns_a, key_a, ns_b, key_b)

    def links(self, namespace: str | None = None, key: str | None = None, *,
              after: XrefLink | None = None, limit: int = 100) -> list[XrefLink]:
        where, params = listing_filter(namespace, key, after, "?")
        rows = self._rows(f"SELECT ns_a, key_a, ns_b, key_b FROM xref{where}"
                          f" ORDER BY ns_a, key_a, ns_b, key_b LIMIT ?", (*params, limit))
        return [XrefLink(*map(str, row)) for row in rows]

    def unlink(self, from_ns: str, key: str, to_ns: str) -> str | None:
        column = "key_b" if from_ns <= to_ns else "key_a"
        where = ("ns_a = ? AND key_a = ? AND ns_b = ?" if from_ns <= to_ns
                 else "ns_b = ? AND key_b = ? AND ns_a = ?")
        rows = self._rows(f"DELETE FROM xref WHERE {where} RETURNING {column}",
                          (from_ns, key, to_ns))
        return str(rows[0][0]) if rows else None

    def import_links(self, links: Sequence[XrefLink], *, dry_run: bool = False) -> XrefImport:
        with self._transaction(commit=not dry_run) as db:
            def lookup(from_ns: str, key: str, to_ns: str) -> str | None:
                return _lookup(db, from_ns, key, to_ns)

            def insert(link: XrefLink) -> None:
                db.execute("INSERT INTO xref VALUES (?, ?, ?, ?)", canonical(
                    link.ns_a, link.key_a, link.ns_b, link.key_b))

            return judge_import(links, lookup, insert)

    @contextmanager
    def _transaction(self, *, commit: bool) -> Iterator[sqlite3.Connection]:
        """One write transaction under the lock: committed, or rolled back (errors, dry runs)."""
        try:
            with self._lock:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    yield self._db
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
                self._db.execute("COMMIT" if commit else "ROLLBACK")
        except sqlite3.Error as exc:
            raise ProcessingError(f"xref store error ({type(exc).__name__}); will retry",
                                  retryable=True) from exc

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _rows(self, sql: str, params: Sequence[object]) -> list[tuple[object, ...]]:
        """All rows of one statement, read under the lock (a DELETE ... RETURNING completes)."""
        try:
            with self._lock:
                return list(self._db.execute(sql, params).fetchall())
        except sqlite3.Error as exc:
            raise ProcessingError(f"xref store error ({type(exc).__name__}); will retry",
                                  retryable=True) from exc

    def _run(self, sql: str, params: tuple[str, ...]) -> sqlite3.Cursor:
        try:
            with self._lock:
                return self._db.execute(sql, params)
        except sqlite3.Error as exc:
            raise ProcessingError(f"xref store error ({type(exc).__name__}); will retry",
                                  retryable=True) from exc


def _lookup(db: sqlite3.Connection, from_ns: str, key: str, to_ns: str) -> str | None:
    if from_ns <= to_ns:
        sql = "SELECT key_b FROM xref WHERE ns_a = ? AND key_a = ? AND ns_b = ?"
    else:
        sql = "SELECT key_a FROM xref WHERE ns_b = ? AND key_b = ? AND ns_a = ?"
    row = db.execute(sql, (from_ns, key, to_ns)).fetchone()
    return None if row is None else str(row[0])

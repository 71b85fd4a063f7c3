"""Cross-references in PostgreSQL, for several daemon replicas sharing one link table.

Same canonical row and two unique constraints as the SQLite store, so the one-to-one rule holds
across replicas even when two of them link at once: the database, not the process, decides.
A lost connection is reopened on the next call; until then calls fail as retryable.
"""

from __future__ import annotations

import threading
from typing import Any

import psycopg
from psycopg import sql

from middleware.errors import ProcessingError
from middleware.stores.xref_sqlite import canonical, conflict

__all__ = ["PostgresXrefStore"]


class PostgresXrefStore:
    """``XrefStore`` on PostgreSQL (psycopg 3); ``table`` may be schema-qualified."""

    def __init__(self, dsn: str, table: str = "silobridge_xref") -> None:
        self._dsn = dsn
        self._table = sql.Identifier(*table.split("."))
        self._lock = threading.Lock()
        self._conn: psycopg.Connection[Any] | None = None
        self._run(sql.SQL(
            "CREATE TABLE IF NOT EXISTS {} ("
            " ns_a text NOT NULL, key_a text NOT NULL, ns_b text NOT NULL, key_b text NOT NULL,"
            " PRIMARY KEY (ns_a, key_a, ns_b), UNIQUE (ns_b, key_b, ns_a))"
        ).format(self._table), ())

    def lookup(self, from_ns: str, key: str, to_ns: str) -> str | None:
        if from_ns <= to_ns:
            query = "SELECT key_b FROM {} WHERE ns_a = %s AND key_a = %s AND ns_b = %s"
        else:
            query = "SELECT key_a FROM {} WHERE ns_b = %s AND key_b = %s AND ns_a = %s"
        rows = self._run(sql.SQL(query).format(self._table), (from_ns, key, to_ns))
        return str(rows[0][0]) if rows else None

    def link(self, ns_a: str, key_a: str, ns_b: str, key_b: str) -> None:
        """Store a pair; the same pair again is a no-op, a contradicting one an error."""
        inserted = self._run(sql.SQL(
            "INSERT INTO {} VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING RETURNING 1"
        ).format(self._table), canonical(ns_a, key_a, ns_b, key_b))
        if not inserted and self.lookup(ns_a, key_a, ns_b) != key_b:
            raise conflict(ns_a, ns_b)

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def _run(self, query: sql.Composed, params: tuple[str, ...]) -> list[tuple[Any, ...]]:
        with self._lock:
            try:
                if self._conn is None or self._conn.closed:
                    self._conn = psycopg.connect(self._dsn, autocommit=True, connect_timeout=5)
                cursor = self._conn.execute(query, params)
                return cursor.fetchall() if cursor.description else []
            except psycopg.OperationalError as exc:
                if self._conn is not None:
                    self._conn.close()
                    self._conn = None
                raise ProcessingError(f"xref store unreachable ({type(exc).__name__}); will "
                                      f"retry", retryable=True) from exc
            except psycopg.Error as exc:
                raise ProcessingError(f"xref store error ({type(exc).__name__})",
                                      retryable=False) from exc

"""Cross-references in PostgreSQL, for several daemon replicas sharing one link table.

Same canonical row and two unique constraints as the SQLite store, so the one-to-one rule holds
across replicas even when two of them link at once: the database, not the process, decides.
The table is created by the schema migrations; connections come from the shared pool, which
replaces a lost one on the next call (until then calls fail as retryable).
"""

from __future__ import annotations

from middleware.stores.postgres import PostgresBackend
from middleware.stores.xref_sqlite import canonical, conflict

__all__ = ["PostgresXrefStore"]


class PostgresXrefStore:
    """``XrefStore`` on PostgreSQL (psycopg 3), in the table ``silobridge_xref``."""

    def __init__(self, backend: PostgresBackend) -> None:
        self._backend = backend

    def lookup(self, from_ns: str, key: str, to_ns: str) -> str | None:
        if from_ns <= to_ns:
            query = ("SELECT key_b FROM silobridge_xref WHERE ns_a = %s AND key_a = %s"
                     " AND ns_b = %s")
        else:
            query = ("SELECT key_a FROM silobridge_xref WHERE ns_b = %s AND key_b = %s"
                     " AND ns_a = %s")
        rows = self._backend.run("xref", query, (from_ns, key, to_ns))
        return str(rows[0][0]) if rows else None

    def link(self, ns_a: str, key_a: str, ns_b: str, key_b: str) -> None:
        """Store a pair; the same pair again is a no-op, a contradicting one an error."""
        inserted = self._backend.run(
            "xref", "INSERT INTO silobridge_xref VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING"
            " RETURNING 1", canonical(ns_a, key_a, ns_b, key_b))
        if not inserted and self.lookup(ns_a, key_a, ns_b) != key_b:
            raise conflict(ns_a, ns_b)

    def close(self) -> None:
        """The pool is shared; ``Stores.close`` closes it after every store."""

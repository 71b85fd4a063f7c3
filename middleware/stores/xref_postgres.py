"""Cross-references in PostgreSQL, for several daemon replicas sharing one link table.

Same canonical row and two unique constraints as the SQLite store, so the one-to-one rule holds
across replicas even when two of them link at once: the database, not the process, decides.
The table is created by the schema migrations; connections come from the shared pool, which
replaces a lost one on the next call (until then calls fail as retryable).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg

from middleware.stores.base import XrefImport, XrefLink
from middleware.stores.postgres import PostgresBackend
from middleware.stores.xref_rules import canonical, conflict, judge_import, listing_filter

__all__ = ["PostgresXrefStore"]


class PostgresXrefStore:
    """``XrefStore`` on PostgreSQL (psycopg 3), in the table ``silobridge_xref``."""

    def __init__(self, backend: PostgresBackend) -> None:
        self._backend = backend

    def lookup(self, from_ns: str, key: str, to_ns: str) -> str | None:
        rows = self._backend.run("xref", _lookup_query(from_ns, to_ns), (from_ns, key, to_ns))
        return str(rows[0][0]) if rows else None

    def link(self, ns_a: str, key_a: str, ns_b: str, key_b: str) -> None:
        """Store a pair; the same pair again is a no-op, a contradicting one an error."""
        inserted = self._backend.run(
            "xref", "INSERT INTO silobridge_xref VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING"
            " RETURNING 1", canonical(ns_a, key_a, ns_b, key_b))
        if not inserted and self.lookup(ns_a, key_a, ns_b) != key_b:
            raise conflict(self.lookup, ns_a, key_a, ns_b, key_b)

    def links(self, namespace: str | None = None, key: str | None = None, *,
              after: XrefLink | None = None, limit: int = 100) -> list[XrefLink]:
        where, params = listing_filter(namespace, key, after, "%s")
        rows = self._backend.run(
            "xref", f"SELECT ns_a, key_a, ns_b, key_b FROM silobridge_xref{where}"
                    f" ORDER BY ns_a, key_a, ns_b, key_b LIMIT %s", (*params, limit))
        return [XrefLink(*map(str, row)) for row in rows]

    def unlink(self, from_ns: str, key: str, to_ns: str) -> str | None:
        if from_ns <= to_ns:
            query = ("DELETE FROM silobridge_xref WHERE ns_a = %s AND key_a = %s AND ns_b = %s"
                     " RETURNING key_b")
        else:
            query = ("DELETE FROM silobridge_xref WHERE ns_b = %s AND key_b = %s AND ns_a = %s"
                     " RETURNING key_a")
        rows = self._backend.run("xref", query, (from_ns, key, to_ns))
        return str(rows[0][0]) if rows else None

    def import_links(self, links: Sequence[XrefLink], *, dry_run: bool = False) -> XrefImport:
        with self._backend.transaction("xref", commit=not dry_run) as connection:
            # one importer at a time, so two imports cannot judge against the same old state
            connection.execute("LOCK TABLE silobridge_xref IN SHARE ROW EXCLUSIVE MODE")

            def lookup(from_ns: str, key: str, to_ns: str) -> str | None:
                return _lookup(connection, from_ns, key, to_ns)

            def insert(link: XrefLink) -> None:
                connection.execute("INSERT INTO silobridge_xref VALUES (%s, %s, %s, %s)",
                                   canonical(link.ns_a, link.key_a, link.ns_b, link.key_b))

            return judge_import(links, lookup, insert)

    def close(self) -> None:
        """The pool is shared; ``Stores.close`` closes it after every store."""


def _lookup_query(from_ns: str, to_ns: str) -> str:
    if from_ns <= to_ns:
        return "SELECT key_b FROM silobridge_xref WHERE ns_a = %s AND key_a = %s AND ns_b = %s"
    return "SELECT key_a FROM silobridge_xref WHERE ns_b = %s AND key_b = %s AND ns_a = %s"


def _lookup(connection: psycopg.Connection[Any], from_ns: str, key: str,
            to_ns: str) -> str | None:
    row = connection.execute(_lookup_query(from_ns, to_ns), (from_ns, key, to_ns)).fetchone()
    return None if row is None else str(row[0])

"""Cross-references in the embedded SQLite file: the default when one daemon runs.

Each link is one row in a canonical order (the smaller namespace first), with a unique index
each way, so ``crm.customer:C-1001`` links to at most one ``erp.account`` and that account to at
most one customer; a lookup from either side reads the same row. The table is created by the
schema migrations (``middleware.stores.migrations``), which run before any store opens.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

from middleware.errors import ProcessingError
from middleware.stores.sqlite import connect

__all__ = ["SqliteXrefStore", "canonical", "conflict"]


def canonical(ns_a: str, key_a: str, ns_b: str, key_b: str) -> tuple[str, str, str, str]:
    """The stored order of a pair, shared by every store so both see links alike."""
    return (ns_a, key_a, ns_b, key_b) if ns_a <= ns_b else (ns_b, key_b, ns_a, key_a)


def conflict(ns_a: str, ns_b: str) -> ProcessingError:
    """A link that contradicts a stored one; permanent, and the message names no ids."""
    return ProcessingError(
        f"cross-reference conflict: the {ns_a} or the {ns_b} is already linked to another "
        f"record (links are one-to-one); remove the old link or correct the source data",
        retryable=False,
        details={"ns_a": ns_a, "ns_b": ns_b},
    )


class SqliteXrefStore:
    """``XrefStore`` on SQLite; thread-safe through one lock around one WAL connection."""

    def __init__(self, path: str | Path) -> None:
        self._lock = threading.Lock()
        try:
            self._db = connect(Path(path))
        except sqlite3.Error as exc:
            raise ProcessingError(f"cannot open the xref store: {exc}", retryable=True) from exc

    def lookup(self, from_ns: str, key: str, to_ns: str) -> str | None:
        if from_ns <= to_ns:
            sql = "SELECT key_b FROM xref WHERE ns_a = ? AND key_a = ? AND ns_b = ?"
        else:
            sql = "SELECT key_a FROM xref WHERE ns_b = ? AND key_b = ? AND ns_a = ?"
        row = self._run(sql, (from_ns, key, to_ns)).fetchone()
        return None if row is None else str(row[0])

    def link(self, ns_a: str, key_a: str, ns_b: str, key_b: str) -> None:
        """Store a pair; the same pair again is a no-op, a contradicting one an error."""
        row = canonical(ns_a, key_a, ns_b, key_b)
        if self._run("INSERT INTO xref VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                     row).rowcount:
            return
        if self.lookup(ns_a, key_a, ns_b) != key_b:
            raise conflict(ns_a, ns_b)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _run(self, sql: str, params: tuple[str, ...]) -> sqlite3.Cursor:
        try:
            with self._lock:
                return self._db.execute(sql, params)
        except sqlite3.Error as exc:
            raise ProcessingError(f"xref store error ({type(exc).__name__}); will retry",
                                  retryable=True) from exc

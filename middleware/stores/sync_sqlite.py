"""Two-way sync state in the embedded SQLite file (one process, or several sharing the file).

Each ``begin`` reads and writes its subject's row inside ``BEGIN IMMEDIATE``, under the file's
write lock, so two workers asking about one subject at once are decided one after the other.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from pathlib import Path

from middleware.stores.base import HeldSubject
from middleware.stores.idempotency_sqlite import RECORDS_DONE
from middleware.stores.sqlite import connect
from middleware.stores.sync_rules import SubjectRow, begin

__all__ = ["SqliteSyncStore"]

_ROW = ("SELECT applied, holder, holder_version, held_until, parked FROM sync_subject"
        " WHERE route = ? AND subject = ?")
_WRITE = ("INSERT INTO sync_subject (route, subject, applied, holder, holder_version, held_until,"
          " parked) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (route, subject)"
          " DO UPDATE SET applied = excluded.applied, holder = excluded.holder,"
          " holder_version = excluded.holder_version, held_until = excluded.held_until,"
          " parked = excluded.parked")


class SqliteSyncStore:
    """``SyncStore`` on SQLite; thread-safe through one lock around one connection."""

    def __init__(self, path: Path) -> None:
        self._db = connect(path)
        self._lock = threading.Lock()

    def begin(self, route: str, subject: str, version: int, holder: str, ttl: float,
              claim: bool, takeover: bool = False) -> str:
        return self.begin_many(route, [(subject, version, holder)], ttl, claim, takeover)[0]

    def begin_many(self, route: str, items: Sequence[tuple[str, int, str]], ttl: float,
                   claim: bool, takeover: bool = False) -> list[str]:
        verdicts = []
        with self._lock, self._db:
            self._db.execute("BEGIN IMMEDIATE")
            for subject, version, holder in items:
                found = self._db.execute(_ROW, (route, subject)).fetchone()
                row = SubjectRow() if found is None else SubjectRow(
                    found[0], found[1], found[2], found[3], bool(found[4]))
                verdict, new = begin(row, version, holder, time.time(), ttl, claim, takeover)
                if new is not None:
                    self._db.execute(_WRITE, (route, subject, new.applied, new.holder,
                                              new.holder_version, new.held_until,
                                              int(new.parked)))
                verdicts.append(verdict.value)
        return verdicts

    def park(self, route: str, subject: str, holder: str, ttl: float) -> None:
        with self._lock, self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute("UPDATE sync_subject SET held_until = ?, parked = 1"
                             " WHERE route = ? AND subject = ? AND holder = ?",
                             (time.time() + ttl, route, subject, holder))

    def applied(self, route: str, subject: str, version: int, holder: str) -> None:
        self.applied_many(route, [(subject, version, holder)])

    def applied_many(self, route: str, items: Sequence[tuple[str, int, str]],
                     records: Sequence[tuple[str, str]] = ()) -> None:
        now = time.time()
        with self._lock, self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany(RECORDS_DONE, [(r, ident, now) for r, ident in records])
            for subject, version, holder in items:
                self._db.execute(
                    "INSERT INTO sync_subject (route, subject, applied, applied_at)"
                    " VALUES (?, ?, ?, ?) ON CONFLICT (route, subject) DO UPDATE SET"
                    " applied = max(coalesce(applied, excluded.applied), excluded.applied),"
                    " applied_at = excluded.applied_at", (route, subject, version, now))
                self._free(route, subject, holder)

    def release(self, route: str, subject: str, holder: str) -> None:
        with self._lock, self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._free(route, subject, holder)

    def version(self, route: str, subject: str) -> int | None:
        with self._lock:
            row = self._db.execute("SELECT applied FROM sync_subject WHERE route = ?"
                                   " AND subject = ?", (route, subject)).fetchone()
        return None if row is None or row[0] is None else int(row[0])

    def _free(self, route: str, subject: str, holder: str) -> None:
        self._db.execute("UPDATE sync_subject SET holder = NULL, holder_version = NULL,"
                         " held_until = NULL, parked = 0"
                         " WHERE route = ? AND subject = ? AND holder = ?",
                         (route, subject, holder))

    def held(self, route: str | None = None) -> list[HeldSubject]:
        now = time.time()
        with self._lock:
            rows = self._db.execute(
                "SELECT route, subject, holder, held_until, parked FROM sync_subject"
                " WHERE held_until > ? AND (? IS NULL OR route = ?) ORDER BY route, subject"
                " LIMIT 1000", (now, route, route)).fetchall()
        return [HeldSubject(r[0], r[1], r[2], float(r[3]) - now, bool(r[4])) for r in rows]

    def remember(self, namespace: str, key: str, fingerprint: str, ttl: float) -> None:
        now = time.time()
        with self._lock, self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute("DELETE FROM sync_echo WHERE ns = ? AND key = ? AND expires <= ?",
                             (namespace, key, now))
            self._db.execute("INSERT INTO sync_echo VALUES (?, ?, ?, ?) ON CONFLICT"
                             " (ns, key, fingerprint) DO UPDATE SET expires = excluded.expires",
                             (namespace, key, fingerprint, now + ttl))

    def take(self, namespace: str, key: str, fingerprint: str) -> bool:
        with self._lock, self._db:
            self._db.execute("BEGIN IMMEDIATE")
            return bool(self._db.execute(
                "DELETE FROM sync_echo WHERE ns = ? AND key = ? AND fingerprint = ?"
                " AND expires > ?", (namespace, key, fingerprint, time.time())).rowcount)

    def prune_echoes(self, chunk: int = 5000) -> int:
        deleted = 0
        while True:  # a chunk per transaction: the workers' writes wait one chunk at most
            with self._lock, self._db:
                count = self._db.execute(
                    "DELETE FROM sync_echo WHERE (ns, key, fingerprint) IN (SELECT ns, key,"
                    " fingerprint FROM sync_echo WHERE expires <= ? LIMIT ?)",
                    (time.time(), chunk)).rowcount
            deleted += count
            if count < chunk:
                return deleted

    def prune_subjects(self, before: float, chunk: int = 5000) -> int:
        # a walk over the primary key, ``chunk`` rows per transaction: the workers' writes
        # wait one chunk at most, and no index on applied_at slows every applied write
        deleted, after = 0, ("", "")
        while True:
            with self._lock:
                bound = self._db.execute(
                    "SELECT route, subject FROM sync_subject WHERE (route, subject) > (?, ?)"
                    " ORDER BY route, subject LIMIT 1 OFFSET ?", (*after, chunk - 1)).fetchone()
                within = "" if bound is None else " AND (route, subject) <= (?, ?)"
                with self._db:
                    deleted += self._db.execute(
                        f"DELETE FROM sync_subject WHERE (route, subject) > (?, ?){within}"
                        " AND applied_at < ? AND (held_until IS NULL OR held_until <= ?)",
                        (*after, *(bound or ()), before, time.time())).rowcount
            if bound is None:
                return deleted
            after = (bound[0], bound[1])

    def close(self) -> None:
        with self._lock:
            self._db.close()

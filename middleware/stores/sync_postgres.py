"""Two-way sync state in PostgreSQL, shared by every replica (``store.kind: postgres``).

``begin`` is one upsert whose condition is the rules' GO case (PostgreSQL serialises upserts on
one key, so replicas asking about one subject at once are decided one after the other); only
when it does not take the subject is the row read back and judged by the rules both backends
share (stale or held). One round trip for the common case: the ordered route's throughput is
bounded by these trips (bench/ordering.py). Claim expiry is on
the database's clock, so replicas whose clocks drift still agree when a claim ran out.
"""

from __future__ import annotations

from collections.abc import Sequence

from middleware.stores.base import HeldSubject
from middleware.stores.postgres import PostgresBackend
from middleware.stores.sync_rules import SubjectRow, Verdict, begin

__all__ = ["PostgresSyncStore"]

_NOW = "extract(epoch FROM clock_timestamp())"
_APPLIED = (
    "INSERT INTO silobridge_sync_subject AS s (route, subject, applied, applied_at)"
    f" VALUES (%s, %s, %s, {_NOW}) ON CONFLICT (route, subject) DO UPDATE SET"
    " applied = greatest(s.applied, excluded.applied), applied_at = excluded.applied_at,"
    " holder = CASE WHEN s.holder = %s THEN NULL ELSE s.holder END,"
    " holder_version = CASE WHEN s.holder = %s THEN NULL ELSE s.holder_version END,"
    " held_until = CASE WHEN s.holder = %s THEN NULL ELSE s.held_until END,"
    " parked = CASE WHEN s.holder = %s THEN false ELSE s.parked END"
)
_CLAIM = (
    "INSERT INTO silobridge_sync_subject AS s"
    " (route, subject, holder, holder_version, held_until, parked)"
    f" VALUES (%s, %s, %s, %s, {_NOW} + %s, false)"
    " ON CONFLICT (route, subject) DO UPDATE SET holder = excluded.holder,"
    " holder_version = excluded.holder_version, held_until = excluded.held_until,"
    " parked = false"
    " WHERE (s.applied IS NULL OR s.applied <= excluded.holder_version)"
    " AND (s.holder IS NULL OR (s.holder = excluded.holder AND (s.parked OR %s))"
    f" OR s.held_until IS NULL OR s.held_until <= {_NOW}) RETURNING 1"
)
_PRUNABLE = f"applied_at < %s AND (held_until IS NULL OR held_until <= {_NOW})"
"""A row last applied before the retention, whose subject no event holds now."""


class PostgresSyncStore:
    """``SyncStore`` on the shared pool; thread-safe (one pooled connection per call)."""

    def __init__(self, backend: PostgresBackend) -> None:
        self._backend = backend

    def begin(self, route: str, subject: str, version: int, holder: str, ttl: float,
              claim: bool, takeover: bool = False) -> str:
        # the common case, a free subject, in one round trip: the upsert's WHERE is the rule
        # of ``sync_rules.begin`` for GO; anything else is read back and judged there
        if claim and self._backend.run("sync", _CLAIM, (route, subject, holder, version, ttl,
                                                        takeover)):
            return Verdict.GO.value
        rows = self._backend.run(
            "sync", f"SELECT applied, holder, holder_version, held_until, parked, {_NOW}"
            " FROM silobridge_sync_subject WHERE route = %s AND subject = %s", (route, subject))
        if not rows:
            return Verdict.GO.value if not claim else Verdict.HELD.value  # raced a delete
        found = rows[0]
        row = SubjectRow(found[0], found[1], found[2], found[3], bool(found[4]))
        verdict, _row = begin(row, version, holder, float(found[5]), ttl, claim, takeover)
        # with a claim, GO here means the subject was freed after the upsert looked: ask again
        return Verdict.HELD.value if claim and verdict is Verdict.GO else verdict.value

    def park(self, route: str, subject: str, holder: str, ttl: float) -> None:
        self._backend.run("sync", f"UPDATE silobridge_sync_subject SET held_until = {_NOW} + %s,"
                          " parked = true WHERE route = %s AND subject = %s AND holder = %s",
                          (ttl, route, subject, holder))

    def applied(self, route: str, subject: str, version: int, holder: str) -> None:
        self._backend.run("sync", _APPLIED, (route, subject, version, *[holder] * 4))

    def applied_many(self, route: str, items: Sequence[tuple[str, int, str]]) -> None:
        # sorted: two replicas' batches lock shared subjects in the same order (no deadlock)
        with self._backend.transaction("sync") as db, db.cursor() as cursor:
            cursor.executemany(_APPLIED, [(route, subject, version, *[holder] * 4)
                                          for subject, version, holder in sorted(items)])

    def release(self, route: str, subject: str, holder: str) -> None:
        self._backend.run("sync", "UPDATE silobridge_sync_subject SET holder = NULL,"
                          " holder_version = NULL, held_until = NULL, parked = false"
                          " WHERE route = %s AND subject = %s AND holder = %s",
                          (route, subject, holder))

    def version(self, route: str, subject: str) -> int | None:
        rows = self._backend.run("sync", "SELECT applied FROM silobridge_sync_subject"
                                 " WHERE route = %s AND subject = %s", (route, subject))
        return None if not rows or rows[0][0] is None else int(rows[0][0])

    def held(self, route: str | None = None) -> list[HeldSubject]:
        rows = self._backend.run(
            "sync", f"SELECT route, subject, holder, held_until - {_NOW}, parked"
            f" FROM silobridge_sync_subject WHERE held_until > {_NOW}"
            " AND (%s::text IS NULL OR route = %s) ORDER BY route, subject LIMIT 1000",
            (route, route))
        return [HeldSubject(r[0], r[1], r[2], float(r[3]), bool(r[4])) for r in rows]

    def remember(self, namespace: str, key: str, fingerprint: str, ttl: float) -> None:
        with self._backend.transaction("sync") as db:
            db.execute(f"DELETE FROM silobridge_sync_echo WHERE ns = %s AND key = %s"
                       f" AND expires <= {_NOW}", (namespace, key))
            db.execute(f"INSERT INTO silobridge_sync_echo VALUES (%s, %s, %s, {_NOW} + %s)"
                       " ON CONFLICT (ns, key, fingerprint) DO UPDATE"
                       " SET expires = excluded.expires", (namespace, key, fingerprint, ttl))

    def take(self, namespace: str, key: str, fingerprint: str) -> bool:
        return bool(self._backend.run(
            "sync", f"DELETE FROM silobridge_sync_echo WHERE ns = %s AND key = %s"
            f" AND fingerprint = %s AND expires > {_NOW} RETURNING 1",
            (namespace, key, fingerprint)))

    def prune_echoes(self, chunk: int = 5000) -> int:
        # by the expiry index, a chunk per statement: no long lock on a big backlog
        deleted = 0
        while True:
            count = len(self._backend.run(
                "sync", "DELETE FROM silobridge_sync_echo WHERE ctid IN (SELECT ctid FROM"
                f" silobridge_sync_echo WHERE expires <= {_NOW} LIMIT %s) RETURNING 1",
                (chunk,)))
            deleted += count
            if count < chunk:
                return deleted

    def prune_subjects(self, before: float, chunk: int = 5000) -> int:
        # a walk over the primary key, ``chunk`` rows per statement: no index on applied_at,
        # which would cost every applied upsert its HOT update (bench/ordering.py)
        deleted, after = 0, ("", "")
        while True:
            bound = self._backend.run(
                "sync", "SELECT route, subject FROM silobridge_sync_subject"
                " WHERE (route, subject) > (%s, %s) ORDER BY route, subject OFFSET %s LIMIT 1",
                (*after, chunk - 1))
            upto = (str(bound[0][0]), str(bound[0][1])) if bound else None
            within = "" if upto is None else " AND (route, subject) <= (%s, %s)"
            deleted += len(self._backend.run(
                "sync", "DELETE FROM silobridge_sync_subject WHERE (route, subject) > (%s, %s)"
                f"{within} AND {_PRUNABLE} RETURNING 1", (*after, *(upto or ()), before)))
            if upto is None:
                return deleted
            after = upto

    def close(self) -> None:
        """The pool is shared; ``Stores.close`` closes it after every store."""

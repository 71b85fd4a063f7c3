"""Two-way sync state in PostgreSQL, shared by every replica (``store.kind: postgres``).

``begin_many`` is one statement per batch of distinct subjects: an upsert whose condition is
the rules' GO case takes every free subject (PostgreSQL serialises upserts on one key, so
replicas asking about one subject at once are decided one after the other), and the rows it did
not take are read in the same round trip and judged by the rules both backends share (stale or
held). The ordered route's throughput was bounded by these trips, one per event before batching
(bench/ordering.py). ``applied_many`` writes the group commit's idempotency records and applied
versions in one statement. Claim expiry is on the database's clock, so replicas whose clocks
drift still agree when a claim ran out."""

from __future__ import annotations

from collections.abc import Sequence

from middleware.stores.base import HeldSubject
from middleware.stores.postgres import PostgresBackend
from middleware.stores.postgres_stores import RECORDS_DONE, records_done
from middleware.stores.sync_rules import SubjectRow, Verdict, begin

__all__ = ["PostgresSyncStore"]

_NOW = "extract(epoch FROM clock_timestamp())"
# applied versions (the highest per subject) and, in the same statement, the idempotency records
# of the group commit: one round trip. A subject's claim is freed when one of the batch's events
# holds it (a holder is an event id, so it can only hold its own subject's row).
_APPLIED = (
    f"WITH done AS ({RECORDS_DONE})"
    " INSERT INTO silobridge_sync_subject AS s (route, subject, applied, applied_at)"
    f" SELECT %s, a.subject, max(a.version), {_NOW}"
    " FROM unnest(%s::text[], %s::bigint[]) AS a(subject, version)"
    " GROUP BY a.subject ORDER BY a.subject"
    " ON CONFLICT (route, subject) DO UPDATE SET"
    " applied = greatest(s.applied, excluded.applied), applied_at = excluded.applied_at,"
    " holder = CASE WHEN s.holder = ANY(%s::text[]) THEN NULL ELSE s.holder END,"
    " holder_version = CASE WHEN s.holder = ANY(%s::text[]) THEN NULL"
    " ELSE s.holder_version END,"
    " held_until = CASE WHEN s.holder = ANY(%s::text[]) THEN NULL ELSE s.held_until END,"
    " parked = CASE WHEN s.holder = ANY(%s::text[]) THEN false ELSE s.parked END"
)
_FREE = (  # the rules' GO case for a claim, as the upsert's condition ({own}: see begin_many)
    "(s.applied IS NULL OR s.applied <= excluded.holder_version)"
    " AND (s.holder IS NULL OR (s.holder = excluded.holder AND {own}) OR s.held_until IS NULL"
    f" OR s.held_until <= {_NOW})"
)
# one primary-key lookup per asked subject: ``route = %s AND subject = ANY(%s)`` was planned
# as a scan of the route's rows with the array as a filter, every row compared with every
# subject asked, so a claim grew with the table (200 claims: 3 ms at 2,000 rows, 18 ms at
# 6,000, in prepared statements)
_ROWS = ("SELECT s.subject, false, s.applied, s.holder, s.holder_version, s.held_until,"
         f" s.parked, {_NOW} FROM unnest(%s::text[]) AS k(subject) CROSS JOIN LATERAL"
         " (SELECT * FROM silobridge_sync_subject r WHERE r.route = %s"
         " AND r.subject = k.subject) AS s")
# claims of many subjects in one statement: the upsert takes every free subject (in subject
# order, so two replicas' batches lock shared rows in the same order), and the rows it did not
# take are read in the same round trip, from the statement's snapshot (see ``begin_many``)
_CLAIM_ANY = (
    "WITH claimed AS (INSERT INTO silobridge_sync_subject AS s"
    " (route, subject, holder, holder_version, held_until, parked)"
    f" SELECT %s, c.subject, c.holder, c.version, {_NOW} + %s, false"
    " FROM unnest(%s::text[], %s::text[], %s::bigint[]) AS c(subject, holder, version)"
    " ORDER BY c.subject"
    " ON CONFLICT (route, subject) DO UPDATE SET holder = excluded.holder,"
    " holder_version = excluded.holder_version, held_until = excluded.held_until,"
    f" parked = false WHERE {_FREE} RETURNING s.subject)"
    " SELECT subject, true, NULL::bigint, NULL::text, NULL::bigint, NULL::float8, false,"
    f" {_NOW} FROM claimed UNION ALL " + _ROWS
)
# an event retakes its own live claim only when parked (back from a retry tier), or as a
# ``takeover`` copy (redelivered, replayed, a retry copy): see ``sync_rules.begin``
_CLAIM = {takeover: _CLAIM_ANY.replace("{own}", "true" if takeover else "s.parked")
          for takeover in (False, True)}
_PRUNABLE = f"applied_at < %s AND (held_until IS NULL OR held_until <= {_NOW})"
"""A row last applied before the retention, whose subject no event holds now."""


class PostgresSyncStore:
    """``SyncStore`` on the shared pool; thread-safe (one pooled connection per call)."""

    def __init__(self, backend: PostgresBackend) -> None:
        self._backend = backend

    def begin(self, route: str, subject: str, version: int, holder: str, ttl: float,
              claim: bool, takeover: bool = False) -> str:
        return self.begin_many(route, [(subject, version, holder)], ttl, claim, takeover)[0]

    def begin_many(self, route: str, items: Sequence[tuple[str, int, str]], ttl: float,
                   claim: bool, takeover: bool = False) -> list[str]:
        # one round trip per wave of distinct subjects (an upsert touches a row once per
        # statement): a subject's second event in one batch is asked about after its first
        verdicts: list[str] = [""] * len(items)
        waiting = list(range(len(items)))
        while waiting:
            wave: dict[str, int] = {}
            later = [n for n in waiting if wave.setdefault(items[n][0], n) != n]
            for subject, judged in self._begin_wave(
                    route, [items[n] for n in wave.values()], ttl, claim, takeover).items():
                verdicts[wave[subject]] = judged
            waiting = later
        return verdicts

    def _begin_wave(self, route: str, items: list[tuple[str, int, str]], ttl: float,
                    claim: bool, takeover: bool) -> dict[str, str]:
        """Verdicts of distinct subjects. Rows the upsert did not take are judged by the rules
        both backends share, as read from the statement's snapshot: an older view can only
        turn a GO into HELD (asked again after ``hold_delay``), never let an event through."""
        subjects = [subject for subject, _version, _holder in items]
        if claim:
            rows = self._backend.run("sync", _CLAIM[takeover], (
                route, ttl, subjects, [holder for _s, _v, holder in items],
                [version for _s, version, _h in items], subjects, route))
        else:
            rows = self._backend.run("sync", _ROWS, (subjects, route))
        taken = {str(row[0]) for row in rows if row[1]}
        found = {str(row[0]): row for row in rows if not row[1]}
        verdicts: dict[str, str] = {}
        for subject, version, holder in items:
            if subject in taken:
                verdicts[subject] = Verdict.GO.value
                continue
            row = found.get(subject)
            if row is None:  # claim: raced an insert or a delete; no claim: a new subject
                verdicts[subject] = Verdict.HELD.value if claim else Verdict.GO.value
                continue
            state = SubjectRow(row[2], row[3], row[4], row[5], bool(row[6]))
            verdict, _row = begin(state, version, holder, float(row[7]), ttl, claim, takeover)
            # with a claim, GO here means the subject was freed after the upsert looked
            verdicts[subject] = (Verdict.HELD.value if claim and verdict is Verdict.GO
                                 else verdict.value)
        return verdicts

    def park(self, route: str, subject: str, holder: str, ttl: float) -> None:
        self._backend.run("sync", f"UPDATE silobridge_sync_subject SET held_until = {_NOW} + %s,"
                          " parked = true WHERE route = %s AND subject = %s AND holder = %s",
                          (ttl, route, subject, holder))

    def applied(self, route: str, subject: str, version: int, holder: str) -> None:
        self.applied_many(route, [(subject, version, holder)])

    def applied_many(self, route: str, items: Sequence[tuple[str, int, str]],
                     records: Sequence[tuple[str, str]] = ()) -> None:
        if not items and not records:
            return
        holders = [holder for _subject, _version, holder in items]
        self._backend.run("sync", _APPLIED, (
            *records_done(sorted(set(records))), route,
            [subject for subject, _version, _holder in items],
            [version for _subject, version, _holder in items], *[holders] * 4))

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

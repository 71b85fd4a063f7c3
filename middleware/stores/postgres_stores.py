"""Idempotency records, ingress claims and named state in PostgreSQL (``store.kind: postgres``).

A claim is one ``INSERT ... ON CONFLICT DO UPDATE ... WHERE <stale> RETURNING``: every key is
inserted as pending unless a row exists, and an existing pending row is taken over only when it
is older than the stale bound. PostgreSQL serialises conflicting inserts on the key, so of many
replicas and threads claiming one key exactly one gets it back. Keys are claimed in sorted order,
so two requests sharing several keys cannot deadlock. Claim times come from the claiming
process's clock, so replicas' clocks must agree (NTP) to well within the stale bound.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence

from middleware.stores.base import Claim
from middleware.stores.postgres import PostgresBackend

__all__ = ["PostgresIdempotencyStore", "PostgresStateStore"]

_CLAIM = (
    "INSERT INTO silobridge_delivered AS d (route, message_id, at, state, owner)"
    " SELECT %s, key, %s, 'pending', %s FROM unnest(%s::text[]) AS key"
    " ON CONFLICT (route, message_id) DO UPDATE SET at = excluded.at, owner = excluded.owner"
    " WHERE d.state = 'pending' AND d.at < %s RETURNING message_id"
)
RECORDS_DONE = (  # also part of the sync store's group commit (sync_postgres)
    "INSERT INTO silobridge_delivered (route, message_id, at, state)"
    " SELECT route, id, %s, 'done' FROM unnest(%s::text[], %s::text[]) AS r(route, id)"
    " ON CONFLICT (route, message_id) DO UPDATE SET state = 'done', owner = NULL"
)


def records_done(records: Sequence[tuple[str, str]]) -> tuple[object, ...]:
    """The parameters of ``RECORDS_DONE`` for distinct, sorted records."""
    return time.time(), [route for route, _ in records], [ident for _, ident in records]


class PostgresIdempotencyStore:
    """``IdempotencyStore`` on the shared pool; thread-safe (one pooled connection per call)."""

    def __init__(self, backend: PostgresBackend) -> None:
        self._backend = backend

    def seen(self, route: str, message_id: str) -> bool:
        return bool(self._run(
            "SELECT 1 FROM silobridge_delivered WHERE route = %s AND message_id = %s"
            " AND state = 'done'", (route, message_id)))

    def record_many(self, records: list[tuple[str, str]]) -> None:
        unique = sorted(set(records))  # one row may be touched once per statement
        if unique:
            self._run(RECORDS_DONE, records_done(unique))

    def claim(self, namespace: str, keys: Sequence[str], stale_after: float) -> Claim:
        now, claim = time.time(), Claim(uuid.uuid4().hex)
        unique = sorted(set(keys))
        if not unique:
            return claim
        won = {str(row[0]) for row in self._run(
            _CLAIM, (namespace, now, claim.owner, unique, now - stale_after))}
        others = [key for key in unique if key not in won]
        states = {str(row[0]): str(row[1]) for row in self._run(
            "SELECT message_id, state FROM silobridge_delivered WHERE route = %s"
            " AND message_id = ANY(%s)", (namespace, others))} if others else {}
        for key in dict.fromkeys(keys):  # the caller's order
            if key in won:
                claim.won.append(key)
            # a row released between the two statements is undecided too: ask again later
            elif states.get(key) == "done":
                claim.done.append(key)
            else:
                claim.pending.append(key)
        return claim

    def confirm(self, namespace: str, keys: Sequence[str]) -> None:
        self.record_many([(namespace, key) for key in keys])

    def release(self, namespace: str, keys: Sequence[str], owner: str) -> None:
        if keys:
            self._run("DELETE FROM silobridge_delivered WHERE route = %s AND message_id = ANY(%s)"
                      " AND owner = %s AND state = 'pending'", (namespace, list(keys), owner))

    def prune(self, before: float, chunk: int = 5000) -> int:
        """Delete in chunks, so no statement holds many row locks or runs into the timeout."""
        deleted = 0
        while True:
            count = len(self._run(
                "DELETE FROM silobridge_delivered WHERE ctid IN (SELECT ctid FROM"
                " silobridge_delivered WHERE at < %s LIMIT %s) RETURNING 1", (before, chunk)))
            deleted += count
            if count < chunk:
                return deleted

    def close(self) -> None:
        """The pool is shared; ``Stores.close`` closes it after every store."""

    def _run(self, query: str, params: Sequence[object]) -> list[tuple[object, ...]]:
        return self._backend.run("idempotency", query, params)


class PostgresStateStore:
    """``StateStore`` on the shared pool: named values such as poller watermarks."""

    def __init__(self, backend: PostgresBackend) -> None:
        self._backend = backend

    def get(self, name: str) -> str | None:
        rows = self._backend.run("state", "SELECT value FROM silobridge_state WHERE name = %s",
                                 (name,))
        return str(rows[0][0]) if rows else None

    def put(self, name: str, value: str) -> None:
        self._backend.run("state", "INSERT INTO silobridge_state VALUES (%s, %s) ON CONFLICT"
                          " (name) DO UPDATE SET value = excluded.value", (name, value))

    def probe(self) -> None:
        """One round trip on a pooled connection: the server answers within the timeouts."""
        self._backend.run("state", "SELECT 1")

    def close(self) -> None:
        """The pool is shared; ``Stores.close`` closes it after every store."""

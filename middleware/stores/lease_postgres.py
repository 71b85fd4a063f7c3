"""Leases in PostgreSQL, shared by every replica (``store.kind: postgres``).

Expiry is computed and compared on the database's clock (``clock_timestamp()``), never a
replica's, so replicas whose clocks drift apart still agree on when a lease ran out. Taking a
lease is one upsert that succeeds only for a free, expired or already-owned row; PostgreSQL
serialises concurrent upserts on the key, so exactly one of several replicas gets it.
``put_if_held`` locks the lease row (``FOR UPDATE``) while it writes the state, so a takeover
waits for that write to commit and the new holder reads the value it left.
"""

from __future__ import annotations

from middleware.stores.postgres import PostgresBackend

__all__ = ["PostgresLeaseStore"]

_TAKE = (
    "INSERT INTO silobridge_lease AS l (name, holder, expires_at)"
    " VALUES (%s, %s, clock_timestamp() + make_interval(secs => %s))"
    " ON CONFLICT (name) DO UPDATE SET holder = excluded.holder,"
    " expires_at = excluded.expires_at"
    " WHERE l.holder = excluded.holder OR l.expires_at <= clock_timestamp()"
    " RETURNING 1"
)
_PUT_IF_HELD = (
    "WITH held AS (SELECT 1 FROM silobridge_lease WHERE name = %s AND holder = %s"
    " AND expires_at > clock_timestamp() FOR UPDATE)"
    " INSERT INTO silobridge_state (name, value) SELECT %s, %s FROM held"
    " ON CONFLICT (name) DO UPDATE SET value = excluded.value RETURNING 1"
)


class PostgresLeaseStore:
    """``LeaseStore`` on the shared pool; thread-safe (one pooled connection per call)."""

    def __init__(self, backend: PostgresBackend) -> None:
        self._backend = backend

    def acquire(self, name: str, holder: str, ttl: float) -> bool:
        return bool(self._backend.run("lease", _TAKE, (name, holder, ttl)))

    def release(self, name: str, holder: str) -> None:
        self._backend.run("lease", "DELETE FROM silobridge_lease WHERE name = %s"
                          " AND holder = %s", (name, holder))

    def holder(self, name: str) -> tuple[str, float] | None:
        rows = self._backend.run(
            "lease", "SELECT holder, extract(epoch FROM expires_at - clock_timestamp())"
            " FROM silobridge_lease WHERE name = %s AND expires_at > clock_timestamp()", (name,))
        return (str(rows[0][0]), float(rows[0][1])) if rows else None

    def put_if_held(self, name: str, holder: str, key: str, value: str) -> bool:
        return bool(self._backend.run("lease", _PUT_IF_HELD, (name, holder, key, value)))

    def close(self) -> None:
        """The pool is shared; ``Stores.close`` closes it after every store."""

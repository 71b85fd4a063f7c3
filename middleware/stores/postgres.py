"""The PostgreSQL side of the store: one connection pool per process, shared by every store.

Several replicas share one database, so the database decides every race (unique keys,
``ON CONFLICT``), never a process. The pool (psycopg_pool) checks a connection before handing
it out and replaces broken ones, so a restarted or failed-over server is used again without
restarting silobridge; until it answers, calls fail as retryable ``ProcessingError`` s, as do
all other database errors (read-only, disk full, a missing table): a store fault is transient,
so the messages that needed the call wait and retry, never go to the DLQ for it. Every
statement runs under ``statement_timeout``, so a locked table or a hung server costs a bounded
wait, never a stuck worker thread.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

from middleware.errors import ProcessingError
from middleware.stores.migrations import MIGRATIONS, MigrationReport, SchemaTooNew, latest_version

__all__ = ["PostgresBackend"]

_LOCK = "SELECT pg_advisory_xact_lock(hashtext('silobridge.schema:' || current_schema()))"


class PostgresBackend:
    """The pool and the one way stores run SQL on it (with errors translated)."""

    def __init__(self, dsn: str, *, max_size: int = 10, statement_timeout: float = 5.0,
                 connect_timeout: float = 5.0) -> None:
        self._statement_ms = str(int(statement_timeout * 1000))
        self._wait = connect_timeout + statement_timeout
        self._pool = ConnectionPool(
            dsn, min_size=1, max_size=max_size, open=False, name="silobridge-store",
            kwargs={"autocommit": True, "connect_timeout": max(1, round(connect_timeout))},
            configure=self._configure, check=ConnectionPool.check_connection,
            timeout=self._wait,
        )
        try:
            self._pool.open(wait=True, timeout=connect_timeout)
        except psycopg.Error as exc:
            self._pool.close()
            raise ProcessingError(
                f"cannot reach the PostgreSQL store within {connect_timeout:g}s "
                f"({type(exc).__name__}); check store.dsn and that the server runs",
                retryable=True) from exc

    def _configure(self, connection: psycopg.Connection[Any]) -> None:
        connection.execute("SELECT set_config('statement_timeout', %s, false)",
                           (self._statement_ms,))

    def run(self, store: str, query: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """One statement in autocommit; its rows (none for a statement without results)."""
        try:
            with self._pool.connection(timeout=self._wait) as connection:
                cursor = connection.execute(query, params)
                return cursor.fetchall() if cursor.description else []
        except psycopg.OperationalError as exc:  # unreachable, timed out, pool exhausted
            raise ProcessingError(f"{store} store unreachable ({type(exc).__name__}); will "
                                  f"retry", retryable=True) from exc
        except psycopg.Error as exc:  # read-only, disk full, a dropped table: still the store's
            raise ProcessingError(f"{store} store error ({type(exc).__name__}); will retry",
                                  retryable=True) from exc

    @contextmanager
    def transaction(self, store: str, *, commit: bool = True
                    ) -> Iterator[psycopg.Connection[Any]]:
        """A connection inside one transaction: committed when the block ends, rolled back on
        an error or when ``commit`` is False (a dry run); errors translated like ``run``."""
        try:
            with self._pool.connection(timeout=self._wait) as connection, \
                    connection.transaction(force_rollback=not commit):
                yield connection
        except psycopg.OperationalError as exc:
            raise ProcessingError(f"{store} store unreachable ({type(exc).__name__}); will "
                                  f"retry", retryable=True) from exc
        except psycopg.Error as exc:
            raise ProcessingError(f"{store} store error ({type(exc).__name__})",
                                  retryable=False) from exc

    def migrate(self) -> MigrationReport:
        """Apply the missing migrations under an advisory lock, in one transaction.

        The lock is per schema and held until commit, so replicas starting together queue
        behind the first, which migrates; the others then find the current version. DDL is
        transactional in PostgreSQL: a failing step leaves the previous version intact.
        """
        try:
            return self._migrate()
        except psycopg.Error as exc:
            detail = exc.diag.message_primary or type(exc).__name__
            raise ProcessingError(f"cannot migrate the PostgreSQL store: {detail}",
                                  retryable=isinstance(exc, psycopg.OperationalError)) from exc

    def _migrate(self) -> MigrationReport:
        with self._pool.connection(timeout=self._wait) as connection, \
                connection.transaction():
            connection.execute("SELECT set_config('statement_timeout', '0', true)")
            connection.execute(_LOCK)
            connection.execute("CREATE TABLE IF NOT EXISTS silobridge_schema_version ("
                               " version integer PRIMARY KEY,"
                               " applied_at timestamptz NOT NULL DEFAULT now())")
            row = connection.execute(
                "SELECT coalesce(max(version), 0) FROM silobridge_schema_version").fetchone()
            before = int(row[0]) if row else 0
            if before > latest_version():
                raise SchemaTooNew("PostgreSQL (store.dsn)", before, latest_version())
            applied = []
            for migration in MIGRATIONS:
                if migration.version > before:
                    for statement in migration.postgres:
                        connection.execute(statement)
                    connection.execute("INSERT INTO silobridge_schema_version (version)"
                                       " VALUES (%s)", (migration.version,))
                    applied.append(migration.version)
        return MigrationReport(before, max(before, latest_version()), tuple(applied))

    def close(self) -> None:
        self._pool.close()

"""Stores the daemon opens: idempotency, state, cross-references, leases and two-way sync.

``store.kind`` picks one backend for all of them. Opening migrates the schema first (see
``migrations``), so every store finds the tables it expects, and a database written by a newer
release is refused before anything reads it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from middleware.config.models import StoreConfig
from middleware.errors import ConfigError, Problem
from middleware.stores.base import (
    Claim,
    IdempotencyStore,
    LeaseStore,
    StateStore,
    Stores,
    XrefStore,
)
from middleware.stores.migrations import MigrationReport, SchemaTooNew

if TYPE_CHECKING:
    from middleware.stores.postgres import PostgresBackend

__all__ = [
    "Claim",
    "IdempotencyStore",
    "LeaseStore",
    "MigrationReport",
    "SchemaTooNew",
    "StateStore",
    "Stores",
    "XrefStore",
    "migrate_store",
    "open_stores",
    "read_dsn",
]


def open_stores(config: StoreConfig) -> Stores:
    """Migrate, then open the stores on the configured backend."""
    if config.kind == "postgres":
        from middleware.stores.lease_postgres import PostgresLeaseStore
        from middleware.stores.postgres_stores import PostgresIdempotencyStore, PostgresStateStore
        from middleware.stores.sync_postgres import PostgresSyncStore
        from middleware.stores.xref_postgres import PostgresXrefStore

        backend = _backend(config)
        try:
            backend.migrate()
        except BaseException:
            backend.close()
            raise
        return Stores(PostgresIdempotencyStore(backend), PostgresXrefStore(backend),
                      PostgresStateStore(backend), PostgresLeaseStore(backend),
                      shared_close=backend.close, sync=PostgresSyncStore(backend))
    from middleware.stores.idempotency_sqlite import SqliteIdempotencyStore
    from middleware.stores.lease_sqlite import SqliteLeaseStore
    from middleware.stores.sqlite import SqliteStateStore, migrate_sqlite
    from middleware.stores.sync_sqlite import SqliteSyncStore
    from middleware.stores.xref_sqlite import SqliteXrefStore

    path = Path(config.path)
    migrate_sqlite(path)
    return Stores(SqliteIdempotencyStore(path), SqliteXrefStore(path), SqliteStateStore(path),
                  SqliteLeaseStore(path), sync=SqliteSyncStore(path))


def migrate_store(config: StoreConfig) -> MigrationReport:
    """Migrate the configured store and close it: ``silobridge store migrate``."""
    if config.kind == "postgres":
        backend = _backend(config)
        try:
            return backend.migrate()
        finally:
            backend.close()
    from middleware.stores.sqlite import migrate_sqlite

    return migrate_sqlite(Path(config.path))


def _backend(config: StoreConfig) -> PostgresBackend:
    from middleware.stores.postgres import PostgresBackend

    return PostgresBackend(read_dsn(config), max_size=config.pool_size,
                           statement_timeout=config.statement_timeout,
                           connect_timeout=config.connect_timeout)


def read_dsn(config: StoreConfig) -> str:
    """``store.dsn``, or the content of ``store.dsn_file`` (a mounted secret, one line)."""
    if config.dsn_file is None:
        assert config.dsn is not None  # the model requires one of the two for postgres
        return config.dsn
    try:
        value = Path(config.dsn_file).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError([Problem(config.dsn_file, None, "store.dsn_file",
                                   f"cannot read the DSN file ({exc.strerror}); mount the "
                                   f"secret there or set store.dsn")]) from exc
    if not value:
        raise ConfigError([Problem(config.dsn_file, None, "store.dsn_file",
                                   "the DSN file is empty; write the PostgreSQL DSN into it")])
    return value

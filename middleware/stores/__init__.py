"""Stores the daemon opens from its config: idempotency, state and cross-references."""

from __future__ import annotations

from pathlib import Path

from middleware.config.models import StoreConfig
from middleware.stores.base import IdempotencyStore, StateStore, Stores, XrefStore
from middleware.stores.sqlite import SqliteIdempotencyStore, SqliteStateStore

__all__ = ["IdempotencyStore", "StateStore", "Stores", "XrefStore", "open_stores"]


def open_stores(config: StoreConfig) -> Stores:
    """Idempotency and state stay embedded; cross-references may live in PostgreSQL."""
    path = Path(config.path)
    xref: XrefStore
    if config.kind == "postgres":
        from middleware.stores.xref_postgres import PostgresXrefStore

        assert config.dsn is not None
        xref = PostgresXrefStore(config.dsn)
    else:
        from middleware.stores.xref_sqlite import SqliteXrefStore

        xref = SqliteXrefStore(path)
    return Stores(SqliteIdempotencyStore(path), xref, SqliteStateStore(path))

"""The table a SQL target or the audit writes to: created when asked, else checked at start.

Checking at start turns a typo in a column name into one clear message before any message is
consumed, instead of ten thousand dead letters that each say "column does not exist".
"""

from __future__ import annotations

from adapters.sql.config import ColumnType
from adapters.sql.dialects import Connection, Dialect
from middleware.errors import ConfigError, Problem

__all__ = ["LINEAGE_COLUMNS", "ensure_table"]

LINEAGE_COLUMNS: dict[str, ColumnType] = {
    "sb_envelope_id": "string",
    "sb_source": "string",
    "sb_event_type": "string",
    "sb_subject": "string",
    "sb_event_time": "timestamp",
    "sb_correlation_id": "string",
    "sb_causation_id": "string",
    "sb_route": "string",
    "sb_mapping": "string",
    "sb_mapping_version": "string",
    "sb_delivered_at": "timestamp",
}
"""Written on every row of a SQL target (``lineage: true``); docs/warehouse.md explains each."""


def ensure_table(
    connection: Connection,
    dialect: Dialect,
    schema: str | None,
    table: str,
    columns: dict[str, ColumnType],
    key: list[str],
    create: bool,
    where: str,
) -> None:
    """Create the table (``create``), then check its columns and, for a key, its unique index."""
    cursor = connection.cursor()
    try:
        if create:
            cursor.execute(dialect.create_sql(dialect.table_ref(schema, table), columns, key))
        cursor.execute(dialect.columns_query(), (table, schema))
        present = {row[0] for row in cursor.fetchall()}
        if not present:
            _fail(where, f"table {table!r} does not exist in the {dialect.name} database; "
                         f"create it (see docs/warehouse.md) or set create: true")
        missing = [name for name in columns if name.lower() not in present]
        if missing:
            _fail(where, f"table {table!r} has no column(s) {', '.join(missing)}; add them "
                         f"(ALTER TABLE) or remove them from 'columns'")
        if key:
            cursor.execute(dialect.unique_keys_query(), (table, schema))
            indexes: dict[str, set[str]] = {}
            for index, column in cursor.fetchall():
                indexes.setdefault(index, set()).add(column)
            wanted = {k.lower() for k in key}
            if wanted not in indexes.values():
                _fail(where, f"table {table!r} has no primary key or unique index on exactly "
                             f"({', '.join(key)}), which the upsert needs; add one")
        connection.commit()
    finally:
        cursor.close()


def _fail(where: str, message: str) -> None:
    raise ConfigError([Problem("<config>", None, where, message)])

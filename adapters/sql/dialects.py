"""What differs between PostgreSQL and MariaDB/MySQL: connecting, quoting, types, upserts, errors.

Everything else (batching, lineage, the audit table) is written once against the DB-API both
drivers offer (psycopg 3 and PyMySQL use the same ``%s`` parameter style). Identifiers were
checked against a strict pattern by the config and are quoted here as well; values never enter
the SQL text.

Errors are classified by what a later attempt could change:

    connection lost or refused, deadlock, serialisation failure,
    lock wait timeout, statement timeout, server shutting down     retryable
    constraint violation, bad value for a type, unknown column     permanent (dead-lettered)
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

import orjson
import psycopg
import psycopg.errors
from psycopg.conninfo import conninfo_to_dict
from psycopg.types.json import Jsonb

from adapters.sql.config import ColumnType
from middleware.errors import ConfigError, DeliveryError, Problem

__all__ = ["Connection", "Dialect", "dialect_for"]


class Connection(Protocol):
    """The part of a DB-API connection used here (psycopg and PyMySQL both fit)."""

    def cursor(self) -> Any: ...
    def commit(self) -> None: ...
    def rollback(self) -> None: ...
    def close(self) -> None: ...


# PostgreSQL SQLSTATE classes worth another attempt: connection exception, transaction
# rollback (deadlock, serialisation), insufficient resources, operator intervention (query
# cancelled by statement_timeout, admin shutdown), system error, internal error
_PG_RETRY_CLASSES = frozenset({"08", "40", "53", "57", "58", "XX"})
_PG_RETRY_STATES = frozenset({"55P03", "55006"})  # lock not available, object in use
# MariaDB/MySQL error numbers worth another attempt: too many connections, server shutdown,
# lock wait timeout, deadlock, query interrupted/timed out, connection killed; client-side
# 2002-2055: cannot connect, server gone away, lost connection
_MY_RETRY_CODES = frozenset({1040, 1053, 1205, 1213, 1317, 1969, 3024, 1927,
                             2002, 2003, 2006, 2013, 2055})
_QUOTED_VALUE = re.compile(r"'[^']*'")
_PG_TRAILING_VALUE = re.compile(r': "[^"]*"$')


@dataclass(frozen=True)
class Dialect:
    """One database family; ``name`` is what error messages and docs call it."""

    name: str
    dsn: str

    # -- SQL text --------------------------------------------------------------------------

    def quote(self, name: str) -> str:
        raise NotImplementedError

    def table_ref(self, schema: str | None, table: str) -> str:
        return f"{self.quote(schema)}.{self.quote(table)}" if schema else self.quote(table)

    def type_name(self, column_type: ColumnType, key: bool) -> str:
        raise NotImplementedError

    def create_sql(self, table: str, columns: dict[str, ColumnType], key: list[str]) -> str:
        """CREATE TABLE IF NOT EXISTS with the key (if any) as primary key."""
        parts = [f"{self.quote(name)} {self.type_name(kind, name in key)}"
                 + (" NOT NULL" if name in key else "") for name, kind in columns.items()]
        if key:
            parts.append(f"PRIMARY KEY ({', '.join(self.quote(k) for k in key)})")
        return f"CREATE TABLE IF NOT EXISTS {table} ({', '.join(parts)})"

    def upsert_sql(self, table: str, columns: list[str], key: list[str], rows: int) -> str:
        raise NotImplementedError

    def insert_sql(self, table: str, columns: list[str], rows: int) -> str:
        names = ", ".join(self.quote(c) for c in columns)
        one = "(" + ", ".join(["%s"] * len(columns)) + ")"
        return f"INSERT INTO {table} ({names}) VALUES {', '.join([one] * rows)}"

    def columns_query(self) -> str:
        """Lower-cased column names of a table (parameters: table, schema or None)."""
        raise NotImplementedError

    def unique_keys_query(self) -> str:
        """(index, column) of every unique index of a table (parameters: table, schema)."""
        raise NotImplementedError

    # -- values and connections ------------------------------------------------------------

    def value(self, kind: ColumnType, value: Any) -> Any:
        """A payload value as the driver should send it for a column of ``kind``."""
        if value is None:
            return None
        if kind == "json":
            return self.json_value(value)
        if isinstance(value, dict | list):
            raise ValueError(f"is a JSON {type(value).__name__} but the column is {kind}; "
                             f"declare the column as json or map a scalar into it")
        if kind == "timestamp":
            return self.timestamp(_parse_time(value))
        return value

    def json_value(self, value: Any) -> Any:
        return orjson.dumps(value).decode()

    def timestamp(self, value: datetime) -> Any:
        return value

    def connect(self, connect_timeout: float, statement_timeout: float) -> Connection:
        raise NotImplementedError

    def classify(self, exc: Exception, label: str) -> DeliveryError:
        raise NotImplementedError


class Postgres(Dialect):
    _TYPES: dict[str, str] = {  # noqa: RUF012 (a class constant, never mutated)
        "string": "text", "text": "text", "integer": "integer", "bigint": "bigint",
        "numeric": "numeric", "double": "double precision", "boolean": "boolean",
        "date": "date", "timestamp": "timestamptz", "json": "jsonb",
    }

    def quote(self, name: str) -> str:
        return '"' + name.replace('"', '""') + '"'

    def type_name(self, column_type: ColumnType, key: bool) -> str:
        return self._TYPES[column_type]

    def upsert_sql(self, table: str, columns: list[str], key: list[str], rows: int) -> str:
        updates = ", ".join(f"{self.quote(c)} = EXCLUDED.{self.quote(c)}"
                            for c in columns if c not in key)
        action = f"DO UPDATE SET {updates}" if updates else "DO NOTHING"
        conflict = ", ".join(self.quote(k) for k in key)
        return f"{self.insert_sql(table, columns, rows)} ON CONFLICT ({conflict}) {action}"

    def columns_query(self) -> str:
        return ("SELECT lower(column_name) FROM information_schema.columns "
                "WHERE table_name = %s AND table_schema = coalesce(%s, current_schema())")

    def unique_keys_query(self) -> str:
        return ("SELECT i.indexrelid::text, lower(a.attname) FROM pg_index i "
                "JOIN pg_class t ON t.oid = i.indrelid "
                "JOIN pg_namespace n ON n.oid = t.relnamespace "
                "JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = ANY(i.indkey) "
                "WHERE i.indisunique AND t.relname = %s "
                "AND n.nspname = coalesce(%s, current_schema())")

    def json_value(self, value: Any) -> Any:
        return Jsonb(value)

    def connect(self, connect_timeout: float, statement_timeout: float) -> Connection:
        # added to the DSN's own options (a search_path, say), which a keyword would replace
        given = str(conninfo_to_dict(self.dsn).get("options") or "")
        options = f"{given} -c statement_timeout={int(statement_timeout * 1000)}".strip()
        return psycopg.connect(self.dsn, connect_timeout=max(1, round(connect_timeout)),
                               options=options)

    def classify(self, exc: Exception, label: str) -> DeliveryError:
        state = getattr(exc, "sqlstate", None) or ""
        retryable = (isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError)
                     and not state) or state[:2] in _PG_RETRY_CLASSES or state in _PG_RETRY_STATES
        return _error(exc, label, retryable, state or type(exc).__name__)


class MariaDb(Dialect):
    _TYPES: dict[str, str] = {  # noqa: RUF012 (a class constant, never mutated)
        "string": "varchar(255)", "text": "longtext", "integer": "int", "bigint": "bigint",
        "numeric": "decimal(38,10)", "double": "double", "boolean": "boolean",
        "date": "date", "timestamp": "datetime(6)", "json": "json",
    }

    def quote(self, name: str) -> str:
        return "`" + name.replace("`", "``") + "`"

    def type_name(self, column_type: ColumnType, key: bool) -> str:
        return self._TYPES[column_type]

    def upsert_sql(self, table: str, columns: list[str], key: list[str], rows: int) -> str:
        # VALUES(col) reads the proposed row: MariaDB has no row alias, MySQL 8 still accepts it
        updates = [f"{self.quote(c)} = VALUES({self.quote(c)})" for c in columns if c not in key]
        if not updates:  # nothing to change: a no-op assignment keeps the statement an upsert
            updates = [f"{self.quote(key[0])} = {self.quote(key[0])}"]
        return (f"{self.insert_sql(table, columns, rows)} "
                f"ON DUPLICATE KEY UPDATE {', '.join(updates)}")

    def columns_query(self) -> str:
        return ("SELECT lower(column_name) FROM information_schema.columns "
                "WHERE table_name = %s AND table_schema = coalesce(%s, DATABASE())")

    def unique_keys_query(self) -> str:
        return ("SELECT index_name, lower(column_name) FROM information_schema.statistics "
                "WHERE non_unique = 0 AND table_name = %s "
                "AND table_schema = coalesce(%s, DATABASE())")

    def timestamp(self, value: datetime) -> Any:
        # DATETIME has no zone: rows hold UTC, as the lineage columns do
        if value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        return value

    def connect(self, connect_timeout: float, statement_timeout: float) -> Connection:
        import pymysql  # the 'sql' extra; imported only when a MariaDB/MySQL DSN is used

        parts = urlsplit(self.dsn)
        connection = pymysql.connect(
            host=parts.hostname or "127.0.0.1", port=parts.port or 3306,
            user=unquote(parts.username or ""), password=unquote(parts.password or ""),
            database=parts.path.lstrip("/") or None, charset="utf8mb4",
            connect_timeout=connect_timeout, read_timeout=statement_timeout + 5,
            write_timeout=statement_timeout + 5, autocommit=False,
            # strict: a bad value is an error, not a silent NULL or truncation; lock waits
            # end with statement_timeout, as on PostgreSQL (a session setting, both servers)
            init_command="SET SESSION sql_mode = 'STRICT_ALL_TABLES,NO_ENGINE_SUBSTITUTION', "
                         f"time_zone = '+00:00', "
                         f"innodb_lock_wait_timeout = {max(1, math.ceil(statement_timeout))}")
        return connection

    def classify(self, exc: Exception, label: str) -> DeliveryError:
        import pymysql

        code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else None
        retryable = code in _MY_RETRY_CODES or (
            code is None and isinstance(exc, pymysql.err.OperationalError | OSError))
        return _error(exc, label, retryable, str(code) if code else type(exc).__name__)


def _error(exc: Exception, label: str, retryable: bool, code: str) -> DeliveryError:
    """A DeliveryError with the driver's first line, values cut out (they go to DLQ headers).

    MariaDB quotes values in single quotes (identifiers in backticks); PostgreSQL ends a
    message about a bad value with it in double quotes (identifiers elsewhere in the line).
    """
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    first = _PG_TRAILING_VALUE.sub(': "…"', _QUOTED_VALUE.sub("'…'", first))
    return DeliveryError(f"{label}: {first[:300]}", retryable=retryable,
                         details={"error": f"sql:{code}"})


def _parse_time(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str):
        return datetime.fromisoformat(value)  # ValueError names the bad text
    raise ValueError(f"is a {type(value).__name__}, not an ISO 8601 timestamp")


def dialect_for(dsn: str, where: str) -> Dialect:
    """The dialect of a database URL, or ConfigError saying which schemes are known."""
    scheme = urlsplit(dsn).scheme.split("+", 1)[0].lower()
    if scheme in ("postgresql", "postgres"):
        return Postgres("PostgreSQL", dsn)
    if scheme in ("mysql", "mariadb"):
        return MariaDb("MariaDB", dsn)
    raise ConfigError([Problem(
        file="<config>", line=None, path=where,
        message=f"the database URL has scheme {scheme or 'none'!r}; use postgresql://... or "
                f"mysql://... (MariaDB, MySQL)")])

"""Real databases for SQL target tests: PostgreSQL and MariaDB on this machine.

``warehouse`` is parametrised over both. PostgreSQL tests get a schema of their own (first on
the search_path, dropped afterwards); MariaDB tests get unique table names (``table()``), every
one dropped afterwards. Without a reachable server a test skips locally and fails under CI.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pymysql
import pytest

from adapters.sql.config import SqlTargetConfig
from adapters.sql.outbound import SqlTarget
from tests.integration.pg_helpers import ADMIN_DSN, schema_dsn

__all__ = ["MARIADB_DSN", "Warehouse", "warehouse"]

MARIADB_DSN = os.environ.get("SQL_MARIADB_DSN", "mysql://root@127.0.0.1:3306/test")


class Warehouse:
    """One database for one test: its DSN, unique table names, queries, cleanup."""

    def __init__(self, kind: str, dsn: str, tag: str) -> None:
        self.kind = kind
        self.dsn = dsn
        self._tag = tag
        self.tables: list[str] = []

    def table(self, name: str) -> str:
        """A table name unique to this test (dropped afterwards)."""
        full = f"{name}_{self._tag}"
        self.tables.append(full)
        return full

    def connect(self) -> Any:
        if self.kind == "postgresql":
            return psycopg.connect(self.dsn, autocommit=True)
        return pymysql.connect(host="127.0.0.1", port=3306, user="root", database="test",
                               autocommit=True)

    def query(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        """Rows of ``sql``; write it with %s parameters and ANSI-quoted names avoided."""
        connection = self.connect()
        try:
            cursor = connection.cursor()
            cursor.execute(sql, params or None)
            rows = list(cursor.fetchall()) if cursor.description else []
            cursor.close()
            return rows
        finally:
            connection.close()

    def target(self, env: str, **settings: Any) -> SqlTarget:
        """A started SQL target on this database (its DSN in the environment variable ``env``)."""
        os.environ[env] = self.dsn
        target = SqlTarget(SqlTargetConfig.model_validate(
            {"type": "sql", "dsn_env": env, **settings}))
        target.start(None)  # type: ignore[arg-type]  # the SQL target uses no context
        return target


def _unreachable(what: str, exc: Exception) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{what} is required under CI: {exc}")
    pytest.skip(f"{what} not reachable: {exc}")


@pytest.fixture(params=["postgresql", "mariadb"])
def warehouse(request: pytest.FixtureRequest) -> Iterator[Warehouse]:
    tag = uuid.uuid4().hex[:10]
    if request.param == "postgresql":
        schema = f"sb_sql_{tag}"
        try:
            with psycopg.connect(ADMIN_DSN, autocommit=True, connect_timeout=3) as conn:
                conn.execute(f'CREATE SCHEMA "{schema}"'.encode())
        except psycopg.OperationalError as exc:
            _unreachable(f"PostgreSQL at {ADMIN_DSN}", exc)
        yield Warehouse("postgresql", schema_dsn(schema), tag)
        with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE'.encode())
        return
    try:
        pymysql.connect(host="127.0.0.1", port=3306, user="root", database="test",
                        connect_timeout=3).close()
    except pymysql.err.OperationalError as exc:
        _unreachable(f"MariaDB at {MARIADB_DSN}", exc)
    db = Warehouse("mariadb", MARIADB_DSN, tag)
    yield db
    connection = db.connect()
    for table in db.tables:
        connection.cursor().execute(f"DROP TABLE IF EXISTS `{table}`")
    connection.close()

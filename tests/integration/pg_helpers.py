"""PostgreSQL for store tests: the real server (``STORE_PG_DSN``, default the local ``test``
database), one fresh schema per test, dropped afterwards.

The schema is put first on the search_path through the DSN, exactly as an operator would
separate silobridge's tables, so the stores under test see only their own tables. Without a
reachable server the tests skip locally and fail under CI, where a skipped store test would
prove nothing.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest

from middleware.config.models import StoreConfig
from middleware.stores import Stores, open_stores

__all__ = ["ADMIN_DSN", "pg_dsn", "schema_dsn"]

ADMIN_DSN = os.environ.get("STORE_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")


def schema_dsn(schema: str, dsn: str = ADMIN_DSN) -> str:
    """``dsn`` with ``schema`` as the first schema of the search_path."""
    separator = "&" if "?" in dsn else "?"
    return f"{dsn}{separator}options={quote(f'-csearch_path={schema}')}"


@pytest.fixture
def pg_dsn() -> Iterator[str]:
    """A DSN whose tables land in a schema of their own, dropped after the test."""
    schema = f"sb_store_{uuid.uuid4().hex[:12]}"
    try:
        with psycopg.connect(ADMIN_DSN, autocommit=True, connect_timeout=3) as conn:
            conn.execute(f'CREATE SCHEMA "{schema}"'.encode())
    except psycopg.OperationalError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL at {ADMIN_DSN} is required under CI: {exc}")
        pytest.skip(f"PostgreSQL not reachable at {ADMIN_DSN}")
    yield schema_dsn(schema)
    with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA "{schema}" CASCADE'.encode())


Opener = Callable[[], Stores]


@pytest.fixture(params=["sqlite", "postgres"])
def opener(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Opener]:
    """Opens another Stores on the same database (another process or replica), on each
    backend; every one is closed afterwards."""
    if request.param == "sqlite":
        config = StoreConfig(path=str(tmp_path / "store.db"))
    else:
        config = StoreConfig(kind="postgres", dsn=request.getfixturevalue("pg_dsn"),
                             pool_size=4)
    opened: list[Stores] = []

    def open_one() -> Stores:
        opened.append(open_stores(config))
        return opened[-1]

    yield open_one
    for stores in opened:
        stores.close()

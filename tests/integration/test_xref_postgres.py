"""The PostgreSQL xref store against the real server (``XREF_PG_DSN``, default local).

Each test uses its own schema, dropped afterwards. Without a reachable server the tests skip
locally and fail under CI, where a skipped store test would prove nothing.
"""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Iterator

import psycopg
import pytest

from middleware.errors import ProcessingError
from middleware.stores.xref_postgres import PostgresXrefStore

DSN = os.environ.get("XREF_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")


@pytest.fixture
def table() -> Iterator[str]:
    """A fresh schema-qualified table name; the schema is dropped after the test."""
    schema = f"sb_test_{uuid.uuid4().hex[:12]}"
    try:
        with psycopg.connect(DSN, autocommit=True, connect_timeout=3) as conn:
            conn.execute(f'CREATE SCHEMA "{schema}"')
    except psycopg.OperationalError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL at {DSN} is required under CI: {exc}")
        pytest.skip(f"PostgreSQL not reachable at {DSN}")
    yield f"{schema}.xref"
    with psycopg.connect(DSN, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture
def store(table: str) -> Iterator[PostgresXrefStore]:
    opened = PostgresXrefStore(DSN, table=table)
    yield opened
    opened.close()


def test_xref_postgres_lookup_both_ways(store: PostgresXrefStore) -> None:
    store.link("crm.customer", "C-1001", "erp.account", "A-77")
    assert store.lookup("crm.customer", "C-1001", "erp.account") == "A-77"
    assert store.lookup("erp.account", "A-77", "crm.customer") == "C-1001"
    assert store.lookup("erp.account", "A-78", "crm.customer") is None


def test_xref_postgres_relink_is_a_no_op_and_conflicts_are_refused(
    store: PostgresXrefStore,
) -> None:
    store.link("crm.customer", "C-1", "erp.account", "A-1")
    store.link("erp.account", "A-1", "crm.customer", "C-1")
    for other in [("crm.customer", "C-1", "erp.account", "A-2"),
                  ("crm.customer", "C-2", "erp.account", "A-1")]:
        with pytest.raises(ProcessingError, match="conflict") as caught:
            store.link(*other)
        assert not caught.value.retryable


def test_xref_postgres_is_shared_between_store_instances(store: PostgresXrefStore,
                                                         table: str) -> None:
    # Given two replicas on one table, when one links, then the other sees it
    replica = PostgresXrefStore(DSN, table=table)
    try:
        store.link("crm.customer", "C-5", "erp.account", "A-5")
        assert replica.lookup("erp.account", "A-5", "crm.customer") == "C-5"
        with pytest.raises(ProcessingError, match="conflict"):
            replica.link("crm.customer", "C-6", "erp.account", "A-5")
    finally:
        replica.close()


def test_xref_postgres_concurrent_conflicting_links_keep_one(store: PostgresXrefStore,
                                                             table: str) -> None:
    replicas = [PostgresXrefStore(DSN, table=table) for _ in range(4)]
    outcomes: list[str] = []

    def claim(n: int) -> None:
        try:
            replicas[n].link("crm.customer", "C-9", "erp.account", f"A-9{n}")
            outcomes.append("linked")
        except ProcessingError:
            outcomes.append("conflict")

    threads = [threading.Thread(target=claim, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for replica in replicas:
        replica.close()
    assert sorted(outcomes) == ["conflict"] * 3 + ["linked"]
    assert store.lookup("crm.customer", "C-9", "erp.account") in {f"A-9{n}" for n in range(4)}


def test_xref_postgres_reconnects_after_connection_loss(store: PostgresXrefStore) -> None:
    store.link("crm.customer", "C-7", "erp.account", "A-7")
    connection = store._conn  # only this store's own backend is terminated
    assert connection is not None
    with psycopg.connect(DSN, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (connection.info.backend_pid,))
    with pytest.raises(ProcessingError) as caught:  # the call that meets the dead connection
        store.lookup("crm.customer", "C-7", "erp.account")
    assert caught.value.retryable
    assert store.lookup("crm.customer", "C-7", "erp.account") == "A-7"


def test_xref_postgres_unreachable_server_is_retryable() -> None:
    with pytest.raises(ProcessingError) as caught:
        PostgresXrefStore("postgresql://postgres@127.0.0.1:1/postgres")
    assert caught.value.retryable

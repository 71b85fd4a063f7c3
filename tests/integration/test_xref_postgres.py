"""The PostgreSQL backend against the real server: the xref store's one-to-one rule across
replicas, and the shared pool surviving lost connections, a cut network and slow statements
without a restart (see ``pg_helpers`` for the per-test schema)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

from middleware.errors import ProcessingError
from middleware.stores.postgres import PostgresBackend
from middleware.stores.xref_postgres import PostgresXrefStore
from tests.integration.pg_helpers import ADMIN_DSN, pg_dsn  # noqa: F401  (a fixture)
from tests.integration.soap_helpers import CuttableProxy


@pytest.fixture
def backend(pg_dsn: str) -> Iterator[PostgresBackend]:  # noqa: F811
    opened = PostgresBackend(pg_dsn, max_size=1, statement_timeout=1, connect_timeout=2)
    opened.migrate()
    yield opened
    opened.close()


def test_xref_postgres_lookup_both_ways(backend: PostgresBackend) -> None:
    store = PostgresXrefStore(backend)
    store.link("crm.customer", "C-1001", "erp.account", "A-77")
    assert store.lookup("crm.customer", "C-1001", "erp.account") == "A-77"
    assert store.lookup("erp.account", "A-77", "crm.customer") == "C-1001"
    assert store.lookup("erp.account", "A-78", "crm.customer") is None


def test_xref_postgres_relink_is_a_no_op_and_conflicts_are_refused(
    backend: PostgresBackend,
) -> None:
    store = PostgresXrefStore(backend)
    store.link("crm.customer", "C-1", "erp.account", "A-1")
    store.link("erp.account", "A-1", "crm.customer", "C-1")
    for other in [("crm.customer", "C-1", "erp.account", "A-2"),
                  ("crm.customer", "C-2", "erp.account", "A-1")]:
        with pytest.raises(ProcessingError, match="conflict") as caught:
            store.link(*other)
        assert not caught.value.retryable


def test_xref_postgres_concurrent_conflicting_links_keep_one(pg_dsn: str) -> None:  # noqa: F811
    replicas = [PostgresBackend(pg_dsn, max_size=1) for _ in range(4)]
    replicas[0].migrate()
    outcomes: list[str] = []

    def claim(n: int) -> None:
        try:
            PostgresXrefStore(replicas[n]).link("crm.customer", "C-9", "erp.account", f"A-9{n}")
            outcomes.append("linked")
        except ProcessingError:
            outcomes.append("conflict")

    threads = [threading.Thread(target=claim, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    linked = PostgresXrefStore(replicas[0]).lookup("crm.customer", "C-9", "erp.account")
    for replica in replicas:
        replica.close()
    assert sorted(outcomes) == ["conflict"] * 3 + ["linked"]
    assert linked in {f"A-9{n}" for n in range(4)}


def test_store_postgres_pool_replaces_a_terminated_connection(backend: PostgresBackend) -> None:
    store = PostgresXrefStore(backend)
    store.link("crm.customer", "C-7", "erp.account", "A-7")
    [(pid,)] = backend.run("test", "SELECT pg_backend_pid()")
    with psycopg.connect(ADMIN_DSN, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    # the pool checks a connection before lending it: the next call just works
    assert store.lookup("crm.customer", "C-7", "erp.account") == "A-7"
    [(new_pid,)] = backend.run("test", "SELECT pg_backend_pid()")
    assert new_pid != pid


def test_store_postgres_network_loss_is_retryable_and_heals_without_restart(
    pg_dsn: str,  # noqa: F811
) -> None:
    # Given a store whose connections go through a proxy the test can cut
    parts = urlsplit(pg_dsn)
    proxy = CuttableProxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    proxied = urlunsplit(parts._replace(netloc=f"{parts.username}@127.0.0.1:{proxy.port}"))
    backend = PostgresBackend(proxied, max_size=2, statement_timeout=1, connect_timeout=1)
    try:
        backend.migrate()
        store = PostgresXrefStore(backend)
        store.link("crm.customer", "C-8", "erp.account", "A-8")
        # When the network is cut, calls fail as retryable within the bounded waits
        proxy.cut()
        started = time.monotonic()
        with pytest.raises(ProcessingError) as caught:
            store.lookup("crm.customer", "C-8", "erp.account")
        assert caught.value.retryable
        assert time.monotonic() - started < 10
        # Then, once it is back, the same store answers again
        proxy.restore()
        deadline = time.monotonic() + 15
        while True:
            try:
                assert store.lookup("crm.customer", "C-8", "erp.account") == "A-8"
                break
            except ProcessingError:
                assert time.monotonic() < deadline, "the pool did not reconnect"
                time.sleep(0.2)
    finally:
        backend.close()
        proxy.close()


def test_store_postgres_statement_timeout_cancels_a_slow_statement(
    backend: PostgresBackend,
) -> None:
    started = time.monotonic()
    with pytest.raises(ProcessingError, match="unreachable") as caught:
        backend.run("test", "SELECT pg_sleep(5)")
    assert caught.value.retryable
    assert time.monotonic() - started < 3
    assert backend.run("test", "SELECT 1") == [(1,)]  # the connection is usable again


def test_store_postgres_unreachable_server_is_a_retryable_error_naming_the_setting() -> None:
    with pytest.raises(ProcessingError, match=r"store\.dsn") as caught:
        PostgresBackend("postgresql://postgres@127.0.0.1:1/test", connect_timeout=1)
    assert caught.value.retryable

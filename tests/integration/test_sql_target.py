"""The SQL target against the real PostgreSQL and MariaDB: upserts, batches, lineage, errors."""

from __future__ import annotations

import socket
import threading
import time
from concurrent.futures import Future
from datetime import UTC, datetime
from typing import Any

import pytest

from adapters.sql.config import SqlTargetConfig
from adapters.sql.outbound import SqlTarget
from middleware.adapter import Delivered
from middleware.envelope import Envelope
from middleware.errors import ConfigError, DeliveryError
from middleware.lineage import Lineage
from tests.integration.sql_helpers import Warehouse, warehouse

__all__ = ["warehouse"]

COLUMNS = {"sku": "string", "price": "numeric", "attrs": "json", "valid_from": "timestamp"}


def _envelope(sku: str, n: int = 0) -> Envelope:
    return Envelope.new(source="erp/prices", type="erp.price.upserted", data={}, subject=sku,
                        id=f"ev-{sku}-{n}", causationid=f"cause-{sku}")


def _row(sku: str, price: Any) -> dict[str, Any]:
    return {"sku": sku, "price": price, "attrs": {"unit": "pc"},
            "valid_from": "2026-01-01T08:00:00+08:00"}


def _results(futures: list[Future[Delivered]]) -> list[BaseException | None]:
    return [f.exception(20) for f in futures]


def test_sql_target_upserts_batches_with_lineage_and_updates_on_rerun(
    warehouse: Warehouse,
) -> None:
    table = warehouse.table("prices")
    target = warehouse.target("SB_TEST_SQL_DSN", table=table, key=["sku"], columns=COLUMNS,
                              create=True, batch={"max_rows": 100, "max_wait_ms": 200})
    lineage = Lineage("prices-route", "erp-prices", "0123456789abcdef")
    try:
        # Given 1,000 records delivered at once
        first = [target.deliver_traced(_envelope(f"P-{n:04}"), _row(f"P-{n:04}", n), lineage)
                 for n in range(1000)]
        assert _results(first) == [None] * 1000
        # When the same records come again with new prices
        second = [target.deliver_traced(_envelope(f"P-{n:04}", 1), _row(f"P-{n:04}", n + 0.5),
                                        lineage) for n in range(1000)]
        assert _results(second) == [None] * 1000
    finally:
        target.close()
    # Then each record is one row, updated, with the lineage of its last delivery
    assert warehouse.query(f"SELECT count(*), sum(price) FROM {table}") == [
        (1000, pytest.approx(sum(n + 0.5 for n in range(1000))))]
    rows = warehouse.query(
        "SELECT sb_envelope_id, sb_source, sb_event_type, sb_subject, sb_causation_id, "
        f"sb_route, sb_mapping, sb_mapping_version, sb_event_time, sb_delivered_at FROM {table} "
        "WHERE sku = %s", "P-0007")
    assert rows[0][:8] == ("ev-P-0007-1", "erp/prices", "erp.price.upserted", "P-0007",
                           "cause-P-0007", "prices-route", "erp-prices", "0123456789abcdef")
    assert rows[0][8] is not None and rows[0][9] is not None
    # the timestamp column holds the instant (08:00 at +08:00 is midnight UTC)
    stamp = warehouse.query(f"SELECT valid_from FROM {table} WHERE sku = %s", "P-0001")[0][0]
    utc = stamp if stamp.tzinfo is None else stamp.astimezone(UTC).replace(tzinfo=None)
    assert utc == datetime(2026, 1, 1, 0, 0)


def test_sql_target_dead_letters_only_the_bad_row_of_a_batch(warehouse: Warehouse) -> None:
    table = warehouse.table("bad")
    target = warehouse.target("SB_TEST_SQL_DSN", table=table, key=["sku"], columns=COLUMNS,
                              create=True, batch={"max_rows": 50, "max_wait_ms": 300})
    try:
        futures = [target.deliver(_envelope(f"S-{n}"), _row(f"S-{n}", "not-a-number" if n == 3
                                                               else n)) for n in range(10)]
        errors = _results(futures)
    finally:
        target.close()
    assert [e is None for e in errors] == [n != 3 for n in range(10)]
    error = errors[3]
    assert isinstance(error, DeliveryError) and not error.retryable
    assert "not-a-number" not in str(error)  # values stay out of messages and DLQ headers
    assert warehouse.query(f"SELECT count(*) FROM {table}") == [(9,)]


def test_sql_target_refuses_unknown_fields_and_null_keys_at_once(warehouse: Warehouse) -> None:
    table = warehouse.table("fields")
    target = warehouse.target("SB_TEST_SQL_DSN", table=table, key=["sku"], columns=COLUMNS,
                              create=True)
    try:
        unknown = target.deliver(_envelope("U"), {"sku": "U", "colour": "red"}).exception(5)
        null_key = target.deliver(_envelope("N"), {"sku": None, "price": 1}).exception(5)
        nested = target.deliver(_envelope("J"), {"sku": "J", "price": {"a": 1}}).exception(5)
    finally:
        target.close()
    assert isinstance(unknown, DeliveryError) and "colour" in str(unknown)
    assert not unknown.retryable
    assert isinstance(null_key, DeliveryError) and "key field 'sku'" in str(null_key)
    assert isinstance(nested, DeliveryError) and "declare the column as json" in str(nested)


def test_sql_target_last_row_of_a_key_wins_within_one_batch(warehouse: Warehouse) -> None:
    table = warehouse.table("dupes")
    target = warehouse.target("SB_TEST_SQL_DSN", table=table, key=["sku"], columns=COLUMNS,
                              create=True, batch={"max_rows": 10, "max_wait_ms": 500})
    try:
        futures = [target.deliver(_envelope("K", n), _row("K", n)) for n in range(5)]
        assert _results(futures) == [None] * 5
    finally:
        target.close()
    assert warehouse.query(f"SELECT price, sb_envelope_id FROM {table}") == [
        (pytest.approx(4), "ev-K-4")]


def test_sql_target_start_names_missing_columns_and_missing_unique_key(
    warehouse: Warehouse,
) -> None:
    table = warehouse.table("existing")
    warehouse.query(f"CREATE TABLE {table} (sku varchar(50), price numeric(10,2))")
    with pytest.raises(ConfigError, match=r"no column\(s\) attrs, valid_from"):
        warehouse.target("SB_TEST_SQL_DSN", table=table, key=["sku"], columns=COLUMNS,
                         lineage=False)
    with pytest.raises(ConfigError, match=r"no primary key or unique index on exactly \(sku\)"):
        warehouse.target("SB_TEST_SQL_DSN", table=table, key=["sku"],
                         columns={"sku": "string", "price": "numeric"}, lineage=False)
    missing = warehouse.table("absent")
    with pytest.raises(ConfigError, match=r"does not exist.*create: true"):
        warehouse.target("SB_TEST_SQL_DSN", table=missing, key=["sku"], columns=COLUMNS)


def test_sql_target_reconnects_after_the_server_drops_its_connection(
    warehouse: Warehouse,
) -> None:
    table = warehouse.table("drop")
    target = warehouse.target("SB_TEST_SQL_DSN", table=table, key=["sku"], columns=COLUMNS,
                              create=True, batch={"max_rows": 10, "max_wait_ms": 0})
    try:
        assert target.deliver(_envelope("A"), _row("A", 1)).exception(10) is None
        # When the server ends the writer's session (a restart, a failover, an admin)
        if warehouse.kind == "postgresql":
            warehouse.query("SELECT pg_terminate_backend(%s)", _session(target))
        else:
            warehouse.query(f"KILL {_session(target)}")
        # Then the next delivery fails as retryable, and the one after succeeds again
        error = target.deliver(_envelope("B"), _row("B", 2)).exception(10)
        assert isinstance(error, DeliveryError) and error.retryable, error
        assert target.deliver(_envelope("B", 1), _row("B", 2)).exception(10) is None
    finally:
        target.close()
    assert warehouse.query(f"SELECT sku FROM {table} ORDER BY sku") == [("A",), ("B",)]


def _session(target: SqlTarget) -> int:
    """The server's id of the (single) writer's session, to end it from outside."""
    connection: Any = target._writers[0]._connection
    if hasattr(connection, "info"):
        return int(connection.info.backend_pid)  # psycopg
    return int(connection.thread_id())  # PyMySQL


def test_sql_target_lock_timeout_is_retryable(warehouse: Warehouse) -> None:
    table = warehouse.table("locked")
    target = warehouse.target("SB_TEST_SQL_DSN", table=table, key=["sku"], columns=COLUMNS,
                              create=True, statement_timeout=1, batch={"max_wait_ms": 0})
    holder = warehouse.connect()
    try:
        assert target.deliver(_envelope("L"), _row("L", 1)).exception(10) is None
        # Given another session holds the row locked
        if warehouse.kind == "postgresql":
            holder.autocommit = False
        else:
            holder.begin()
        holder.cursor().execute(f"SELECT * FROM {table} WHERE sku = 'L' FOR UPDATE")
        started = time.monotonic()
        error = target.deliver(_envelope("L", 1), _row("L", 2)).exception(10)
        assert isinstance(error, DeliveryError) and error.retryable, error
        assert time.monotonic() - started < 5
        holder.rollback()
        assert target.deliver(_envelope("L", 2), _row("L", 3)).exception(10) is None
    finally:
        holder.close()
        target.close()


def test_sql_target_deliveries_from_many_threads_all_land(warehouse: Warehouse) -> None:
    table = warehouse.table("threads")
    target = warehouse.target("SB_TEST_SQL_DSN", table=table, key=["sku"], columns=COLUMNS,
                              create=True, writers=3, batch={"max_rows": 25, "max_wait_ms": 20})
    futures: list[Future[Delivered]] = []
    lock = threading.Lock()

    def send(base: int) -> None:
        for n in range(100):
            future = target.deliver(_envelope(f"T-{base}-{n}"), _row(f"T-{base}-{n}", n))
            with lock:
                futures.append(future)

    try:
        threads = [threading.Thread(target=send, args=(b,)) for b in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert _results(futures) == [None] * 400
    finally:
        target.close()
    assert warehouse.query(f"SELECT count(*) FROM {table}") == [(400,)]


@pytest.mark.parametrize("scheme", ["postgresql://postgres@", "mysql://root@"])
def test_sql_target_start_says_which_database_it_cannot_reach(
    scheme: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("SB_TEST_SQL_DSN", f"{scheme}127.0.0.1:{port}/test")
    target = SqlTarget(SqlTargetConfig.model_validate(
        {"type": "sql", "dsn_env": "SB_TEST_SQL_DSN", "table": "t", "key": ["k"],
         "columns": {"k": "string"}, "connect_timeout": 2}))
    with pytest.raises(DeliveryError, match=r"cannot connect to (PostgreSQL|MariaDB) table t"):
        target.start(None)  # type: ignore[arg-type]  # the SQL target uses no context

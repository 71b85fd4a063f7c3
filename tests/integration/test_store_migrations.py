"""Schema migrations: a fresh store, a store the previous release created (its rows kept), two
processes starting at once (one migrates), a store migrated by a newer release (refused and left
untouched), and ``silobridge store migrate`` -- on SQLite and on the real PostgreSQL."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest
import yaml

from middleware.cli import main
from middleware.config.models import StoreConfig
from middleware.errors import ConfigError
from middleware.stores import MigrationReport, SchemaTooNew, migrate_store, open_stores
from middleware.stores.migrations import latest_version
from middleware.stores.postgres import PostgresBackend
from middleware.stores.sqlite import migrate_sqlite
from tests.integration.pg_helpers import pg_dsn  # noqa: F401  (a fixture)

# The DDL of the release before schema versioning, copied from its middleware/stores/sqlite.py,
# xref_sqlite.py and xref_postgres.py: what a deployed store looks like today.
PREVIOUS_SQLITE = (
    "CREATE TABLE IF NOT EXISTS delivered ("
    " route TEXT NOT NULL, message_id TEXT NOT NULL, at REAL NOT NULL,"
    " PRIMARY KEY (route, message_id)) WITHOUT ROWID",
    "CREATE INDEX IF NOT EXISTS delivered_at ON delivered (at)",
    "CREATE TABLE IF NOT EXISTS state (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS xref ("
    " ns_a TEXT NOT NULL, key_a TEXT NOT NULL, ns_b TEXT NOT NULL, key_b TEXT NOT NULL,"
    " PRIMARY KEY (ns_a, key_a, ns_b), UNIQUE (ns_b, key_b, ns_a)) WITHOUT ROWID",
)
PREVIOUS_POSTGRES_XREF = (
    "CREATE TABLE IF NOT EXISTS silobridge_xref ("
    " ns_a text NOT NULL, key_a text NOT NULL, ns_b text NOT NULL, key_b text NOT NULL,"
    " PRIMARY KEY (ns_a, key_a, ns_b), UNIQUE (ns_b, key_b, ns_a))"
)
EVERY = tuple(range(1, latest_version() + 1))


def _sqlite(tmp_path: Path) -> StoreConfig:
    return StoreConfig(path=str(tmp_path / "store.db"))


def test_store_migration_of_a_fresh_sqlite_file_applies_every_version_once(
    tmp_path: Path,
) -> None:
    assert migrate_store(_sqlite(tmp_path)) == MigrationReport(0, latest_version(), EVERY)
    assert migrate_store(_sqlite(tmp_path)) == MigrationReport(latest_version(),
                                                               latest_version(), ())


def test_store_migration_keeps_the_previous_releases_sqlite_data(tmp_path: Path) -> None:
    # Given a file the previous release wrote: a delivered id, a watermark and a link
    path = tmp_path / "store.db"
    old = sqlite3.connect(path)
    for statement in PREVIOUS_SQLITE:
        old.execute(statement)
    old.execute("INSERT INTO delivered VALUES ('orders', 'E-1', 1700000000.0)")
    old.execute("INSERT INTO state VALUES ('poller:p:watermark', '2024-05-01')")
    old.execute("INSERT INTO xref VALUES ('crm.customer', 'C-1', 'erp.account', 'A-1')")
    old.commit()
    old.close()
    # When the new code opens it
    stores = open_stores(_sqlite(tmp_path))
    try:
        # Then every row is still there and means what it meant
        assert stores.idempotency.seen("orders", "E-1")
        assert stores.state.get("poller:p:watermark") == "2024-05-01"
        assert stores.xref.lookup("erp.account", "A-1", "crm.customer") == "C-1"
        assert stores.idempotency.claim("orders", ["E-1"], stale_after=60).done == ["E-1"]
    finally:
        stores.close()
    assert migrate_store(_sqlite(tmp_path)).applied == ()


def _race(migrate: list[Callable[[], MigrationReport]], attempts: int) -> list[MigrationReport]:
    """Run ``attempts`` migrations at the same moment; their reports."""
    start = threading.Barrier(attempts)
    reports: list[MigrationReport] = []
    errors: list[BaseException] = []

    def run(call: Callable[[], MigrationReport]) -> None:
        start.wait()
        try:
            reports.append(call())
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(migrate[n],)) for n in range(attempts)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    return reports


def test_store_two_processes_migrating_one_sqlite_file_migrate_once(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    reports = _race([lambda: migrate_sqlite(path)] * 4, 4)
    assert sorted(r.applied for r in reports) == [(), (), (), EVERY]
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT count(*) FROM schema_version").fetchone() == (len(EVERY),)


def test_store_newer_sqlite_file_is_refused_and_left_untouched(tmp_path: Path) -> None:
    migrate_store(_sqlite(tmp_path))
    with sqlite3.connect(tmp_path / "store.db") as db:
        db.execute("INSERT INTO schema_version VALUES (?, 0)", (latest_version() + 7,))
    with pytest.raises(SchemaTooNew, match=r"newer release") as caught:
        open_stores(_sqlite(tmp_path))
    assert caught.value.found == latest_version() + 7
    assert str(tmp_path / "store.db") in str(caught.value)
    with sqlite3.connect(tmp_path / "store.db") as db:
        assert db.execute("SELECT max(version) FROM schema_version").fetchone() == (
            latest_version() + 7,)


def test_store_postgres_fresh_and_previous_release_schema_keep_links(
    pg_dsn: str,  # noqa: F811
) -> None:
    # Given the xref table the previous release created, with a link in it
    with psycopg.connect(pg_dsn, autocommit=True) as db:
        db.execute(PREVIOUS_POSTGRES_XREF)
        db.execute("INSERT INTO silobridge_xref VALUES ('crm.customer', 'C-1', 'erp.account',"
                   " 'A-1')")
    config = StoreConfig(kind="postgres", dsn=pg_dsn)
    # When the new code opens the store, then it migrated everything and kept the link
    stores = open_stores(config)
    try:
        assert stores.xref.lookup("crm.customer", "C-1", "erp.account") == "A-1"
        assert stores.idempotency.claim("ingress:x", ["k"], stale_after=60).won == ["k"]
    finally:
        stores.close()
    assert migrate_store(config) == MigrationReport(latest_version(), latest_version(), ())


def test_store_postgres_replicas_starting_together_migrate_once(
    pg_dsn: str,  # noqa: F811
) -> None:
    # Given five replicas with their own pools (their own sessions on the server)
    backends = [PostgresBackend(pg_dsn, max_size=1) for _ in range(5)]
    try:
        # When all migrate at the same moment
        reports = _race([backend.migrate for backend in backends], 5)
    finally:
        for backend in backends:
            backend.close()
    # Then exactly one applied the migrations and each version was applied once
    assert sorted(r.applied for r in reports) == [(), (), (), (), EVERY]
    with psycopg.connect(pg_dsn) as db:
        rows = db.execute("SELECT version FROM silobridge_schema_version ORDER BY 1").fetchall()
    assert [v for (v,) in rows] == list(EVERY)


def test_store_newer_postgres_schema_is_refused(pg_dsn: str) -> None:  # noqa: F811
    config = StoreConfig(kind="postgres", dsn=pg_dsn)
    migrate_store(config)
    with psycopg.connect(pg_dsn, autocommit=True) as db:
        db.execute("INSERT INTO silobridge_schema_version (version) VALUES (%s)",
                   (latest_version() + 1,))
    with pytest.raises(SchemaTooNew, match=r"migrated by a newer release"):
        open_stores(config)


def test_store_dsn_file_holds_the_postgres_dsn(pg_dsn: str, tmp_path: Path) -> None:  # noqa: F811
    secret = tmp_path / "dsn"
    secret.write_text(pg_dsn + "\n")
    stores = open_stores(StoreConfig(kind="postgres", dsn_file=str(secret)))
    try:
        stores.state.put("k", "v")
        assert stores.state.get("k") == "v"
    finally:
        stores.close()


@pytest.mark.parametrize("content", [None, ""])
def test_store_unreadable_or_empty_dsn_file_names_the_setting(
    tmp_path: Path, content: str | None
) -> None:
    secret = tmp_path / "dsn"
    if content is not None:
        secret.write_text(content)
    with pytest.raises(ConfigError) as caught:
        open_stores(StoreConfig(kind="postgres", dsn_file=str(secret)))
    assert caught.value.problems[0].path == "store.dsn_file"
    assert str(secret) in str(caught.value)


def test_store_migrate_command_reports_versions_and_refuses_a_newer_store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "silobridge.yaml"
    config.write_text(yaml.safe_dump({"store": {"path": str(tmp_path / "store.db")}}))
    assert main(["store", "migrate", "-c", str(config)]) == 0
    assert f"schema version 0 -> {latest_version()}" in capsys.readouterr().out
    assert main(["store", "migrate", "-c", str(config)]) == 0
    assert "nothing to do" in capsys.readouterr().out
    with sqlite3.connect(tmp_path / "store.db") as db:
        db.execute("INSERT INTO schema_version VALUES (99, 0)")
    assert main(["store", "migrate", "-c", str(config)]) == 1
    assert "schema version 99" in capsys.readouterr().err

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from middleware.errors import ProcessingError
from middleware.stores.sqlite import migrate_sqlite
from middleware.stores.xref_sqlite import SqliteXrefStore


@pytest.fixture
def store(tmp_path: Path) -> SqliteXrefStore:
    migrate_sqlite(tmp_path / "x.db")
    return SqliteXrefStore(tmp_path / "x.db")


def test_xref_sqlite_lookup_both_ways(store: SqliteXrefStore) -> None:
    store.link("crm.customer", "C-1001", "erp.account", "A-77")
    assert store.lookup("crm.customer", "C-1001", "erp.account") == "A-77"
    assert store.lookup("erp.account", "A-77", "crm.customer") == "C-1001"
    assert store.lookup("crm.customer", "C-1002", "erp.account") is None
    assert store.lookup("crm.customer", "C-1001", "erp.contact") is None


def test_xref_sqlite_relinking_same_pair_is_a_no_op(store: SqliteXrefStore) -> None:
    store.link("crm.customer", "C-1", "erp.account", "A-1")
    store.link("erp.account", "A-1", "crm.customer", "C-1")
    assert store.lookup("crm.customer", "C-1", "erp.account") == "A-1"


@pytest.mark.parametrize(
    "other", [("crm.customer", "C-1", "erp.account", "A-2"),
              ("crm.customer", "C-2", "erp.account", "A-1")],
)
def test_xref_sqlite_conflicting_link_is_refused_both_ways(
    store: SqliteXrefStore, other: tuple[str, str, str, str]
) -> None:
    store.link("crm.customer", "C-1", "erp.account", "A-1")
    with pytest.raises(ProcessingError, match="conflict") as caught:
        store.link(*other)
    assert not caught.value.retryable
    # the operator reads it in `dlq list`: both keys of the refused pair, and the fix
    assert f"{other[0]}:{other[1]} <-> {other[2]}:{other[3]}" in str(caught.value)
    assert "silobridge xref unlink" in str(caught.value)


def test_xref_sqlite_one_key_links_to_several_namespaces(store: SqliteXrefStore) -> None:
    store.link("crm.customer", "C-1", "erp.account", "A-1")
    store.link("crm.customer", "C-1", "shop.customer", "S-9")
    assert store.lookup("shop.customer", "S-9", "erp.account") is None
    assert store.lookup("crm.customer", "C-1", "shop.customer") == "S-9"


def test_xref_sqlite_survives_reopen(tmp_path: Path) -> None:
    migrate_sqlite(tmp_path / "x.db")
    first = SqliteXrefStore(tmp_path / "x.db")
    first.link("crm.customer", "C-1", "erp.account", "A-1")
    first.close()
    assert SqliteXrefStore(tmp_path / "x.db").lookup("erp.account", "A-1", "crm.customer") == "C-1"


def test_xref_sqlite_is_thread_safe(store: SqliteXrefStore) -> None:
    def work(n: int) -> None:
        for i in range(50):
            store.link("crm.customer", f"C-{n}-{i}", "erp.account", f"A-{n}-{i}")
            assert store.lookup("erp.account", f"A-{n}-{i}", "crm.customer") == f"C-{n}-{i}"

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert store.lookup("crm.customer", "C-7-49", "erp.account") == "A-7-49"


def test_xref_sqlite_closed_store_error_is_translated(store: SqliteXrefStore) -> None:
    store.close()
    with pytest.raises(ProcessingError, match="xref store error"):
        store.lookup("crm.customer", "C-1", "erp.account")

"""The embedded idempotency store: records, batch commits and retention."""

from __future__ import annotations

import time
from pathlib import Path

from middleware.stores.sqlite import SqliteIdempotencyStore


def test_idempotency_store_remembers_per_route(tmp_path: Path) -> None:
    store = SqliteIdempotencyStore(tmp_path / "s.db")
    store.record_many([("orders", "a"), ("orders", "b"), ("customers", "a")])
    assert store.seen("orders", "a") and store.seen("orders", "b")
    assert store.seen("customers", "a") and not store.seen("customers", "b")
    store.close()
    # durable: a new process opening the file sees the same records
    reopened = SqliteIdempotencyStore(tmp_path / "s.db")
    assert reopened.seen("orders", "b")
    reopened.close()


def test_idempotency_store_prunes_only_records_older_than_the_cutoff(tmp_path: Path) -> None:
    store = SqliteIdempotencyStore(tmp_path / "s.db")
    store.record_many([("r", f"old-{n}") for n in range(12)])
    cutoff = time.time() + 0.001
    time.sleep(0.01)
    store.record_many([("r", "new")])
    assert store.prune(cutoff, chunk=5) == 12
    assert not store.seen("r", "old-3")
    assert store.seen("r", "new")
    store.close()

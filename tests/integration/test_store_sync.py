"""The two-way sync store on both backends, opened twice like two replicas: the per-subject
compare-and-set decides every race once, applied versions never go back, fingerprints are
taken once."""

from __future__ import annotations

import threading
from collections.abc import Callable

import psycopg

from middleware.config.models import StoreConfig
from middleware.stores import Stores, open_stores
from middleware.stores.sync_postgres import _ROWS
from tests.integration.pg_helpers import pg_dsn  # noqa: F401  (a fixture)

Opener = Callable[[], Stores]


def test_sync_store_gives_a_contended_subject_to_exactly_one_replica(opener: Opener) -> None:
    replicas = [opener(), opener()]
    verdicts: list[str] = []
    lock, start = threading.Lock(), threading.Barrier(8)

    def claim(n: int) -> None:
        sync = replicas[n % 2].sync
        assert sync is not None
        start.wait()
        verdict = sync.begin("r", "C-1", 10 + n, f"event-{n}", 30.0, claim=True)
        with lock:
            verdicts.append(verdict)

    threads = [threading.Thread(target=claim, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert sorted(verdicts) == ["go"] + ["held"] * 7
    (held,) = [h for h in replicas[1].sync.held("r")]  # type: ignore[union-attr]
    assert held.subject == "C-1" and 0 < held.seconds_left <= 30 and not held.parked


def test_sync_store_applies_versions_forward_only_and_frees_the_claim(opener: Opener) -> None:
    one, two = opener().sync, opener().sync
    assert one is not None and two is not None
    assert one.begin("r", "S", 5, "e5", 30.0, claim=True) == "go"
    one.park("r", "S", "e5", 60.0)
    assert [h.parked for h in two.held("r")] == [True]
    assert two.begin("r", "S", 6, "e6", 30.0, claim=True) == "held"
    one.applied("r", "S", 5, "e5")
    assert two.held("r") == []
    assert two.begin("r", "S", 6, "e6", 30.0, claim=True) == "go"
    two.applied("r", "S", 6, "e6")
    one.applied("r", "S", 5, "late-copy")  # never lowers the applied version
    assert one.begin("r", "S", 5, "e5-replayed", 30.0, claim=False) == "stale"
    assert one.begin("r", "S", 6, "e6-copy", 30.0, claim=False) == "go"
    # a released claim (dead letter) frees the subject without applying
    assert one.begin("r", "T", 1, "t1", 30.0, claim=True) == "go"
    one.release("r", "T", "t1")
    assert two.begin("r", "T", 2, "t2", 30.0, claim=True) == "go"
    # an expired claim (its holder died) is free for the next event
    assert one.begin("r", "U", 1, "u1", 0.05, claim=True) == "go"
    threading.Event().wait(0.1)  # the claim's own expiry is what is under test
    assert two.begin("r", "U", 2, "u2", 30.0, claim=True) == "go"


def test_sync_store_forgets_a_write_fingerprint_once_it_is_taken_or_expired(
    opener: Opener
) -> None:
    one, two = opener().sync, opener().sync
    assert one is not None and two is not None
    one.remember("to-erp", "C-1", "fp-a", 60.0)
    one.remember("to-erp", "C-1", "fp-b", 60.0)
    assert not two.take("to-erp", "C-1", "fp-c")
    assert two.take("to-erp", "C-1", "fp-a")
    assert not one.take("to-erp", "C-1", "fp-a")  # taken once: a repeat is a real change
    assert not two.take("to-erp", "C-2", "fp-b")  # another record
    one.remember("to-erp", "C-3", "fp-x", 0.05)
    threading.Event().wait(0.1)
    assert not two.take("to-erp", "C-3", "fp-x")
    assert two.take("to-erp", "C-1", "fp-b")


def test_sync_store_reads_the_applied_version_another_replica_wrote(opener: Opener) -> None:
    one, two = opener().sync, opener().sync
    assert one is not None and two is not None
    assert two.version("changes", "C-1") is None
    one.applied("changes", "C-1", 7, "")
    one.applied("changes", "C-1", 3, "")
    assert two.version("changes", "C-1") == 7


def test_sync_store_decides_a_batch_as_if_its_events_came_one_after_the_other(
    opener: Opener
) -> None:
    # Given: subject A applied at version 5, subject B claimed by another replica's event
    one, two = opener().sync, opener().sync
    assert one is not None and two is not None
    assert one.begin("r", "A", 5, "a5", 30.0, claim=True) == "go"
    one.applied("r", "A", 5, "a5")
    assert two.begin("r", "B", 1, "b1", 30.0, claim=True) == "go"
    # When: one batch asks about older, held, new and repeated subjects
    verdicts = one.begin_many("r", [("A", 3, "a3"), ("B", 2, "b2"), ("C", 1, "c1"),
                                    ("C", 2, "c2"), ("A", 6, "a6"), ("A", 7, "a7")],
                              30.0, claim=True)
    # Then: each as if asked alone, in order: a subject's second event waits for its first
    assert verdicts == ["stale", "held", "go", "held", "go", "held"]
    assert {(h.subject, h.holder) for h in two.held("r")} == {
        ("A", "a6"), ("B", "b1"), ("C", "c1")}
    # without claims a batch only says stale or go
    assert two.begin_many("r", [("A", 4, "x"), ("A", 9, "y"), ("D", 1, "z")], 30.0,
                          claim=False) == ["stale", "go", "go"]


def test_sync_store_commits_applied_versions_with_the_idempotency_records(
    opener: Opener
) -> None:
    stores, other = opener(), opener()
    sync = stores.sync
    assert sync is not None and other.sync is not None
    assert sync.begin_many("r", [("S", 1, "s1"), ("T", 1, "t1")], 30.0, claim=True) == [
        "go", "go"]
    # S's event s1 and a stale-deliver copy s0 of the same subject in one commit, with a record
    # of a message that applied nothing
    sync.applied_many("r", [("S", 1, "s1"), ("S", 0, "s0"), ("T", 1, "t1")],
                      [("r", "s1"), ("r", "s0"), ("r", "t1"), ("r", "plain")])
    assert all(other.idempotency.seen("r", ident) for ident in ("s1", "s0", "t1", "plain"))
    assert other.sync.held("r") == []
    assert (other.sync.version("r", "S"), other.sync.version("r", "T")) == (1, 1)


def test_sync_store_reads_the_asked_subjects_by_key_in_a_large_route(pg_dsn: str) -> None:  # noqa: F811
    """The rows a claim did not take are read by primary key, one lookup per asked subject:
    ``subject = ANY(array)`` was planned as a scan of the route's rows with the array as a
    filter, every row compared with every subject asked, and a claim of 200 grew from 3 to
    18 ms as the route went from 2,000 to 6,000 subjects (prepared)."""
    stores = open_stores(StoreConfig(kind="postgres", dsn=pg_dsn, pool_size=1))
    try:
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            conn.execute("INSERT INTO silobridge_sync_subject (route, subject, applied)"
                         " SELECT 'r', 'C-' || n, 1 FROM generate_series(1, 5000) AS n")
            plan = "\n".join(str(row[0]) for row in conn.execute(
                "EXPLAIN " + _ROWS, (["C-1", "C-2", "C-3"], "r")))
        assert "ANY" not in plan, plan
        assert "Index Scan using silobridge_sync_subject_pkey" in plan, plan
        sync = stores.sync
        assert sync is not None  # and the statement still decides: free, held, new
        assert sync.begin_many("r", [("C-1", 2, "e1"), ("C-1", 3, "e2"), ("N-1", 1, "e3")],
                               30.0, True) == ["go", "held", "go"]
    finally:
        stores.close()

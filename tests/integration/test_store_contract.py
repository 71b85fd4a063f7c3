"""One behaviour suite for the stores, run against embedded SQLite and the real PostgreSQL.

Idempotency records (seen/record_many/prune), ingress claims (claim/confirm/release, stale
takeover, concurrent claimers), named state and cross-references must behave alike on both
backends: a deployment that moves to PostgreSQL for replicas must not change what is deduped.
"""

from __future__ import annotations

import threading
import time

from tests.integration.pg_helpers import Opener


def test_store_records_are_per_namespace_and_durable(opener: Opener) -> None:
    stores = opener()
    stores.idempotency.record_many([("orders", "a"), ("orders", "b"), ("customers", "a"),
                                    ("orders", "a")])
    assert stores.idempotency.seen("orders", "a") and stores.idempotency.seen("orders", "b")
    assert stores.idempotency.seen("customers", "a")
    assert not stores.idempotency.seen("customers", "b")
    stores.close()
    assert opener().idempotency.seen("orders", "b")  # a new process sees the same records


def test_store_prune_deletes_only_records_older_than_the_cutoff(opener: Opener) -> None:
    store = opener().idempotency
    store.record_many([("r", f"old-{n}") for n in range(12)])
    cutoff = time.time() + 0.001
    time.sleep(0.01)
    store.record_many([("r", "new")])
    assert store.prune(cutoff, chunk=5) == 12
    assert not store.seen("r", "old-3")
    assert store.seen("r", "new")


def test_store_claim_is_won_once_then_pending_then_done(opener: Opener) -> None:
    store = opener().idempotency
    first = store.claim("ingress:x", ["k1", "k2"], stale_after=60)
    assert (first.won, first.done, first.pending) == (["k1", "k2"], [], [])
    # a pending claim is not a delivery: neither seen nor claimable
    assert not store.seen("ingress:x", "k1")
    second = store.claim("ingress:x", ["k2", "k1", "k3"], stale_after=60)
    assert (second.won, second.pending) == (["k3"], ["k2", "k1"])
    store.confirm("ingress:x", ["k1"])
    third = store.claim("ingress:x", ["k1", "k2"], stale_after=60)
    assert (third.won, third.done, third.pending) == ([], ["k1"], ["k2"])
    assert store.seen("ingress:x", "k1")
    assert first.owner != second.owner


def test_store_release_frees_only_the_owners_pending_claims(opener: Opener) -> None:
    store = opener().idempotency
    mine = store.claim("ns", ["a", "b"], stale_after=60)
    store.confirm("ns", ["b"])
    other = store.claim("ns", ["c"], stale_after=60)
    store.release("ns", ["a", "b", "c"], mine.owner)  # c is not mine, b is done
    again = store.claim("ns", ["a", "b", "c"], stale_after=60)
    assert (again.won, again.done, again.pending) == (["a"], ["b"], ["c"])
    assert other.won == ["c"]


def test_store_stale_pending_claim_is_taken_over(opener: Opener) -> None:
    store = opener().idempotency
    dead = store.claim("ns", ["a"], stale_after=0.2)
    assert store.claim("ns", ["a"], stale_after=60).pending == ["a"]  # not stale yet
    time.sleep(0.3)
    heir = store.claim("ns", ["a"], stale_after=0.2)
    assert heir.won == ["a"]
    # the dead owner coming back to release must not free the heir's claim
    store.release("ns", ["a"], dead.owner)
    assert store.claim("ns", ["a"], stale_after=60).pending == ["a"]
    # a done record is never stale
    store.confirm("ns", ["a"])
    time.sleep(0.3)
    assert store.claim("ns", ["a"], stale_after=0.2).done == ["a"]


def test_store_concurrent_claims_from_several_processes_have_one_winner(
    opener: Opener,
) -> None:
    # Given four "processes" (their own connections) with five threads each
    replicas = [opener().idempotency for _ in range(4)]
    start = threading.Barrier(20)
    wins: list[list[str]] = []
    lock = threading.Lock()

    def claim(n: int) -> None:
        start.wait()
        result = replicas[n % 4].claim("ingress:race", ["x", "y"], stale_after=60)
        with lock:
            wins.append(result.won)

    # When all twenty claim the same two keys at once
    threads = [threading.Thread(target=claim, args=(n,)) for n in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Then each key was won exactly once
    won = sorted(key for keys in wins for key in keys)
    assert won == ["x", "y"]


def test_store_state_get_put_overwrites_and_survives_reopen(opener: Opener) -> None:
    stores = opener()
    assert stores.state.get("poller:p:watermark") is None
    stores.state.put("poller:p:watermark", "2024-01-01T00:00:00Z")
    stores.state.put("poller:p:watermark", "2024-02-01T00:00:00Z")
    stores.close()
    assert opener().state.get("poller:p:watermark") == "2024-02-01T00:00:00Z"


def test_store_xref_links_both_ways_on_every_backend(opener: Opener) -> None:
    xref = opener().xref
    xref.link("crm.customer", "C-1", "erp.account", "A-1")
    assert xref.lookup("erp.account", "A-1", "crm.customer") == "C-1"
    assert opener().xref.lookup("crm.customer", "C-1", "erp.account") == "A-1"

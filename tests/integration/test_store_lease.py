"""Leases behave alike on embedded SQLite and the real PostgreSQL: one holder at a time, renewed
by the holder, taken over after expiry, released on request, and a state write fenced by the
lease (a holder that lost it writes nothing)."""

from __future__ import annotations

import threading
import time

from tests.integration.pg_helpers import Opener


def test_lease_has_one_holder_until_it_expires_then_another_takes_it(opener: Opener) -> None:
    # (held for long enough that a slow machine cannot see it expire early; only the last
    # renewal is short, and nothing is asserted between it and the wait that outlasts it)
    a, b = opener().lease, opener().lease
    assert a.acquire("poll:x", "A", ttl=30)
    assert not b.acquire("poll:x", "B", ttl=30)
    assert a.acquire("poll:x", "A", ttl=20)  # renewal by the holder
    holder = b.holder("poll:x")
    assert holder is not None and holder[0] == "A" and 0 < holder[1] <= 20
    assert a.acquire("poll:y", "A", ttl=30) and b.acquire("poll:z", "B", ttl=30)  # per name
    assert a.acquire("poll:x", "A", ttl=0.6)
    time.sleep(0.8)
    assert b.holder("poll:x") is None
    assert b.acquire("poll:x", "B", ttl=5)
    assert not a.acquire("poll:x", "A", ttl=5)  # the old holder does not get it back
    assert a.holder("poll:x") is not None and a.holder("poll:x")[0] == "B"  # type: ignore[index]


def test_lease_release_frees_it_only_for_its_holder(opener: Opener) -> None:
    a, b = opener().lease, opener().lease
    assert a.acquire("poll:x", "A", ttl=60)
    b.release("poll:x", "B")  # not B's: nothing happens
    assert not b.acquire("poll:x", "B", ttl=60)
    a.release("poll:x", "A")
    assert b.holder("poll:x") is None
    assert b.acquire("poll:x", "B", ttl=60)


def test_lease_put_if_held_writes_only_for_the_current_holder(opener: Opener) -> None:
    stores_a, stores_b = opener(), opener()
    assert stores_a.lease.acquire("poll:x", "A", ttl=30)
    assert stores_a.lease.put_if_held("poll:x", "A", "poll:x:watermark", "1")
    assert not stores_b.lease.put_if_held("poll:x", "B", "poll:x:watermark", "2")
    assert stores_b.state.get("poll:x:watermark") == "1"
    # Given A's lease ran out (its last renewal was short) and B took over
    assert stores_a.lease.acquire("poll:x", "A", ttl=0.5)
    time.sleep(0.7)
    assert not stores_a.lease.put_if_held("poll:x", "A", "poll:x:watermark", "stale")
    assert stores_b.lease.acquire("poll:x", "B", ttl=60)
    assert stores_b.lease.put_if_held("poll:x", "B", "poll:x:watermark", "3")
    # Then A, which lost it half-way, cannot overwrite B's progress
    assert not stores_a.lease.put_if_held("poll:x", "A", "poll:x:watermark", "stale")
    assert stores_a.state.get("poll:x:watermark") == "3"


def test_lease_concurrent_replicas_one_wins(opener: Opener) -> None:
    leases = [opener().lease for _ in range(4)]
    won: list[str] = []
    start = threading.Barrier(len(leases) * 3)

    def contend(index: int, attempt: int) -> None:
        start.wait()
        if leases[index].acquire("poll:race", f"R{index}-{attempt}", ttl=60):
            won.append(f"R{index}-{attempt}")

    threads = [threading.Thread(target=contend, args=(i, n)) for i in range(len(leases))
               for n in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(won) == 1
    assert leases[0].holder("poll:race") is not None
    assert leases[0].holder("poll:race")[0] == won[0]  # type: ignore[index]

"""Pruning the two-way sync state on both backends: expired write fingerprints go, subject rows
last applied before the retention go, a claimed subject's row stays whatever its age."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from middleware.stores import Stores
from middleware.stores.base import SyncStore

Opener = Callable[[], Stores]


def _sync(opener: Opener) -> SyncStore:
    sync = opener().sync
    assert sync is not None
    return sync


def test_sync_store_prunes_only_expired_fingerprints(opener: Opener) -> None:
    sync = _sync(opener)
    for n in range(5):
        sync.remember("to-erp", f"C-{n}", "fp-old", 0.05)
    sync.remember("to-erp", "C-0", "fp-live", 60.0)
    threading.Event().wait(0.1)  # the fingerprints' own expiry is what is under test
    assert sync.prune_echoes(chunk=2) == 5  # in chunks smaller than the backlog
    assert sync.prune_echoes() == 0
    assert sync.take("to-erp", "C-0", "fp-live")  # the live one is still there


def test_sync_store_prunes_subjects_applied_before_the_retention_but_never_a_claimed_one(
    opener: Opener
) -> None:
    one, two = _sync(opener), _sync(opener)
    # Given: subjects applied on two routes, one claimed by an event in flight, one released
    # after a dead letter (never applied), one whose holder died (claim expired)
    for n in range(5):
        one.applied("a", f"S-{n}", 10, "")
        one.applied("b", f"S-{n}", 10, "")
    assert one.begin("a", "S-1", 11, "in-flight", 60.0, claim=True) == "go"
    assert one.begin("a", "DL", 1, "dead", 60.0, claim=True) == "go"
    one.release("a", "DL", "dead")
    assert one.begin("a", "S-2", 11, "died", 0.05, claim=True) == "go"
    threading.Event().wait(0.1)  # the claim's own expiry is what is under test
    cutoff = time.time() + 1  # everything was applied before it
    # When: a retention that has not passed yet prunes nothing applied ...
    assert two.prune_subjects(time.time() - 3600, chunk=3) == 1  # DL: never applied, free
    # ... and one that has passed, walking the table in chunks of 3
    assert two.prune_subjects(cutoff, chunk=3) == 9
    # Then: only the claimed subject is left, and its claim still holds
    assert [(h.route, h.subject, h.holder) for h in one.held()] == [("a", "S-1", "in-flight")]
    assert one.version("a", "S-1") == 10
    assert one.version("a", "S-2") is None and one.version("b", "S-4") is None
    assert two.begin("a", "S-1", 12, "later", 60.0, claim=True) == "held"


def test_sync_store_keeps_a_subject_applied_again_after_the_cutoff(opener: Opener) -> None:
    sync = _sync(opener)
    sync.applied("a", "S", 10, "")
    cutoff = time.time() + 0.5
    assert sync.prune_subjects(cutoff) == 1
    sync.applied("a", "S", 20, "")
    assert sync.prune_subjects(time.time() - 60) == 0
    assert sync.version("a", "S") == 20

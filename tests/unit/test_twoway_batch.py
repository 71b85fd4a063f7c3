"""Batch admission (middleware/admission.py): the new events of an ordered route that arrive
together ask the store for their claims in one round trip, and what goes wrong with one of
them (no subject, a store that refuses the batch) costs that one alone."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from middleware.broker.topology import dlq_name
from middleware.envelope import Envelope
from middleware.storecalls import Batches
from middleware.stores.base import SyncStore
from tests.unit.pipeline_helpers import wait_until
from tests.unit.test_twoway_pipeline import Running, outcome, running, update


def _ordered(prefix: str) -> dict[str, Any]:
    return {"name": prefix, "bind": [f"{prefix}.customer.*"],
            "sync": {"ordering": "subject", "stale": "drop", "hold_delay": 0.05}}


class FirstBatchWaits:
    """Wraps the store's ``begin_many``: records each batch's size; the first batch waits until
    ``release`` (so what arrives meanwhile gathers); ``refuse`` makes every batch of more than
    one event fail (the store's own ``begin`` of one event goes through ``begin_many`` too)."""

    def __init__(self, store: SyncStore, refuse: bool = False) -> None:
        self.sizes: list[int] = []
        self.release = threading.Event()
        self._begin_many = store.begin_many
        self._refuse = refuse

    def __call__(self, route: str, items: Sequence[tuple[str, int, str]], ttl: float,
                 claim: bool, takeover: bool = False) -> list[str]:
        self.sizes.append(len(items))
        if len(self.sizes) == 1:
            self.release.wait(5)
        if self._refuse and len(items) > 1:
            raise ConnectionError("the store refuses this statement")
        return self._begin_many(route, items, ttl, claim, takeover)


def _wrapped(run: Running, refuse: bool = False) -> FirstBatchWaits:
    store = run.stores.sync
    assert store is not None
    wrapper = FirstBatchWaits(store, refuse)
    store.begin_many = wrapper  # type: ignore[method-assign]
    return wrapper


def _sent_together(run: Running, prefix: str, wrapper: FirstBatchWaits,
                   envelopes: list[Envelope]) -> None:
    """The first event's batch holds the store while the rest arrive; then it lets go."""
    run.send(prefix, envelopes[0])
    assert wait_until(lambda: wrapper.sizes == [1])
    run.send(prefix, *envelopes[1:])
    assert not wait_until(lambda: len(wrapper.sizes) > 1, 0.3)  # they wait for the store
    wrapper.release.set()


def test_events_that_arrive_together_ask_for_their_claims_in_one_round_trip(
    tmp_path: Path, prefix: str
) -> None:
    with running(tmp_path, [_ordered(prefix)], prefetch=50) as run:
        wrapper = _wrapped(run)
        events = [update(prefix, f"C-{n}", 1, v=n) for n in range(40)]
        _sent_together(run, prefix, wrapper, events)
        target = run.targets[prefix]
        assert wait_until(lambda: len(target.accepted) == 40)
        # the 39 that arrived while the first was in the store went together; one store
        # thread per waiting event (16 of them) made batches of at most 15 before
        assert wrapper.sizes == [1, 39]
        assert sorted(i for i, _ in target.accepted) == sorted(e.id for e in events)


def test_updates_of_one_subject_in_one_batch_reach_the_target_in_order(
    tmp_path: Path, prefix: str
) -> None:
    with running(tmp_path, [_ordered(prefix)]) as run:
        wrapper = _wrapped(run)
        other = update(prefix, "C-0", 1)
        updates = [update(prefix, "C-1", second, v=second) for second in range(1, 6)]
        _sent_together(run, prefix, wrapper, [other, *updates])
        target = run.targets[prefix]
        assert wait_until(lambda: target.accepted and target.accepted[-1][0] == updates[-1].id
                          and outcome(prefix, "delivered") + outcome(prefix, "stale") == 6, 10)
        delivered = [i for i, _ in target.accepted if i != other.id]
        # later updates overtook none: what reached the target is in version order
        assert delivered == [e.id for e in updates if e.id in delivered]
        assert outcome(prefix, "held") >= 1  # the batch's later updates of C-1 waited


def test_an_event_without_a_subject_in_a_batch_is_dead_lettered_alone(
    tmp_path: Path, prefix: str
) -> None:
    with running(tmp_path, [_ordered(prefix)]) as run:
        wrapper = _wrapped(run)
        bare = Envelope.new(source="crm/t", type=f"{prefix}.customer.updated", data={})
        good = [update(prefix, f"C-{n}", 1) for n in range(3)]
        _sent_together(run, prefix, wrapper, [good[0], bare, *good[1:]])
        assert wait_until(lambda: len(run.targets[prefix].accepted) == 3)
        assert wait_until(lambda: run.broker.depth(dlq_name(prefix)) == 1)
        assert bare.id not in run.targets[prefix].calls


def test_a_batch_the_store_refuses_is_asked_again_event_by_event(
    tmp_path: Path, prefix: str
) -> None:
    with running(tmp_path, [_ordered(prefix)]) as run:
        wrapper = _wrapped(run, refuse=True)
        events = [update(prefix, f"C-{n}", 1) for n in range(4)]
        _sent_together(run, prefix, wrapper, events)
        assert wait_until(lambda: len(run.targets[prefix].accepted) == 4)
        assert wrapper.sizes == [1, 3, 1, 1, 1]  # refused together, then asked one by one
        assert run.broker.depth(dlq_name(prefix)) == 0
        assert outcome(prefix, "requeued") == 0


def _batches(submit: Callable[[Callable[[], None]], bool]
             ) -> tuple[Batches[int], list[list[int]], list[list[int]]]:
    ran: list[list[int]] = []
    refused: list[list[int]] = []
    return Batches(submit, ran.append, refused.append), ran, refused


def test_batches_gather_what_arrives_while_one_runs() -> None:
    jobs: list[Callable[[], None]] = []
    batches, ran, refused = _batches(lambda job: jobs.append(job) is None)
    for item in range(5):
        batches.add(item)
    assert len(jobs) == 1  # one job on the pool, however many items wait
    jobs[0]()
    batches.add(5)
    assert len(jobs) == 2  # the first job ended with nothing waiting: the next one starts
    jobs[1]()
    assert ran == [[0, 1, 2, 3, 4], [5]]
    assert refused == []


def test_batches_hand_back_what_a_stopping_pool_no_longer_takes() -> None:
    batches, ran, refused = _batches(lambda job: False)
    batches.add(1)
    batches.add(2)
    assert ran == []
    assert refused == [[1], [2]]  # each refused as it came, none left waiting

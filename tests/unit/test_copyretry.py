"""A failed message whose retry copy cannot be published is held, not requeued in a loop.

The order after a partition heals: the consumer is back, the publisher is not. Before, the
message was nacked at once, redelivered, failed again, about twenty times a second, each return
spending the queue's delivery limit. Here the worker's publisher is down while its consumer runs.
"""

from __future__ import annotations

import threading
from pathlib import Path

from middleware.broker.ingest import publish_envelopes
from middleware.broker.memory import MemoryBroker
from middleware.broker.topology import queue_name, retry_name, topology_for
from middleware.config.models import Config, StoreConfig
from middleware.copyretry import CopyRetries
from middleware.outcome import Outcome
from middleware.pipeline import RouteWorker
from middleware.stores import open_stores
from tests.unit.pipeline_helpers import Scripted, event, wait_until


class _Gate:
    """The worker's view of whether its publisher is connected; counts how often it looked."""

    def __init__(self) -> None:
        self.looks = 0
        self.open = False

    def __call__(self) -> bool:
        self.looks += 1
        return self.open


def test_copy_that_cannot_be_published_is_held_then_parked_once_the_publisher_is_back(
    tmp_path: Path, prefix: str
) -> None:
    # Given a route whose consumer runs while the worker's publisher is not connected
    config = Config.model_validate({
        "retry": {"attempts": 2, "initial_delay": 0.05, "multiplier": 1},
        "routes": [{"name": prefix, "bind": [f"{prefix}.customer.*"],
                    "target": {"type": "scripted"}}],
    })
    (route,) = config.routes
    stores = open_stores(StoreConfig(path=str(tmp_path / "store.db")))
    broker = MemoryBroker(topology_for(config))
    sender, copies = broker.publisher("sender"), broker.publisher("worker")
    sender.start()
    target = Scripted(fail=1)
    outcomes: list[Outcome] = []
    worker = RouteWorker(route, config.retry_for(route), target, copies, stores, lambda: None,
                         listener=lambda record: outcomes.append(record.outcome))
    gate = _Gate()
    worker._copies = CopyRetries(prefix, gate, backoff=(0.01, 0.02))
    consumer = broker.consumer({queue_name(prefix): worker.handle}, prefetch=10,
                               before_ack=worker.commit)
    consumer.start()
    try:
        envelope = event(prefix)
        publish_envelopes(sender, [envelope], timeout=5)
        # When the target fails and the retry copy cannot be published
        assert wait_until(lambda: len(target.calls) == 1)
        # Then the message waits, unacked: many turns later it was neither requeued nor
        # delivered again (before: back in its queue and at the target again at once)
        assert wait_until(lambda: gate.looks >= 20)
        assert len(target.calls) == 1
        assert outcomes == []
        assert worker.wait_idle(0) is False  # still in flight, holding its prefetch slot
        # When the publisher is connected again
        copies.start()
        gate.open = True
        # Then the copy goes to the retry tier, comes back and is delivered: once each
        assert wait_until(lambda: stores.idempotency.seen(prefix, envelope.id))
        assert [call[0] for call in target.calls] == [envelope.id, envelope.id]
        assert outcomes == [Outcome.RETRIED, Outcome.DELIVERED]
        assert broker.depth(retry_name(prefix, 1)) == 0
        assert worker.wait_idle(1)
    finally:
        consumer.stop()
        worker.close()
        broker.close()
        stores.close()


def test_closing_gives_every_held_message_up_and_nothing_runs_after() -> None:
    # Given two tries waiting for a publisher that never comes back
    retries = CopyRetries("r", lambda: False, backoff=(0.01, 0.02))
    ran, gave_up = threading.Event(), []
    retries.later(1, ran.set, lambda: gave_up.append(1))
    retries.later(5, ran.set, lambda: gave_up.append(5))
    assert wait_until(lambda: retries.waiting == 2)
    # When the worker stops
    retries.close()
    # Then each is given up once (nacked back by the worker), none was tried, no more wait
    assert sorted(gave_up) == [1, 5]
    assert not ran.is_set()
    assert retries.waiting == 0
    retries.later(1, ran.set, lambda: gave_up.append(9))
    assert gave_up[-1] == 9  # given up at once after close


"""A route running on the in-memory broker: the worker, its queues and a scripted target."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from middleware.adapter import Delivered, OutboundAdapter
from middleware.broker.contract import Consumer, Publisher
from middleware.broker.ingest import publish_envelopes
from middleware.broker.memory import MemoryBroker
from middleware.broker.topology import queue_name, topology_for
from middleware.config.models import Config, StoreConfig
from middleware.envelope import Envelope
from middleware.errors import DeliveryError
from middleware.pipeline import RouteWorker
from middleware.stores import Stores, open_stores


@dataclass
class Scripted:
    """A target that fails the first ``fail`` calls (retryable or not), then accepts."""

    fail: int = 0
    retryable: bool = True
    calls: list[tuple[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self, context: Any) -> None:
        """Nothing to open."""

    def deliver(self, envelope: Envelope, payload: Any) -> Future[Delivered]:
        future: Future[Delivered] = Future()
        with self.lock:
            self.calls.append((envelope.id, payload))
            failing, self.fail = self.fail > 0, max(0, self.fail - 1)
        if failing:
            future.set_exception(DeliveryError("scripted failure", retryable=self.retryable,
                                               details={"status": "503"}))
        else:
            future.set_result(Delivered())
        return future

    def close(self) -> None:
        """Nothing to release."""


@dataclass
class Route:
    broker: MemoryBroker
    publisher: Publisher
    consumer: Consumer
    worker: RouteWorker
    target: OutboundAdapter
    stores: Stores
    name: str

    def send(self, *envelopes: Envelope) -> None:
        publish_envelopes(self.publisher, list(envelopes), timeout=5)


def event(prefix: str, n: int = 1, **data: Any) -> Envelope:
    return Envelope.new(source="crm/test", type=f"{prefix}.customer.updated",
                        subject=f"C-{n}", data={"customer_no": f"C-{n}", **data})


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.005)
    return predicate()


@contextmanager
def running_route(tmp_path: Path, prefix: str, target: OutboundAdapter,
                  **route: Any) -> Iterator[Route]:
    """A route ``<prefix>`` bound to ``<prefix>.customer.*`` with fast retry tiers; ``target``
    is started by the caller (a real adapter needs the route's publisher and broker)."""
    config = Config.model_validate({
        "retry": {"attempts": 2, "initial_delay": 0.05, "multiplier": 1},
        "routes": [{"name": prefix, "bind": [f"{prefix}.customer.*"],
                    "target": {"type": "scripted"}, **route}],
    })
    stores = open_stores(StoreConfig(path=str(tmp_path / "store.db")))
    broker = MemoryBroker(topology_for(config))
    publisher = broker.publisher()
    publisher.start()
    (route_config,) = config.routes
    worker = RouteWorker(route_config, config.retry_for(route_config), target, publisher,
                         stores, lambda: None)
    consumer = broker.consumer({queue_name(prefix): worker.handle}, prefetch=10,
                               before_ack=worker.commit)
    consumer.start()
    try:
        yield Route(broker, publisher, consumer, worker, target, stores, prefix)
    finally:
        consumer.stop()
        publisher.stop()
        broker.close()
        stores.close()


def take(broker: MemoryBroker, queue: str, count: int) -> list[Any]:
    """Consume and ack ``count`` messages of a queue (their deliveries, in order)."""
    got: list[Any] = []

    def keep(delivery: Any) -> None:
        got.append(delivery)
        delivery.ack()

    consumer = broker.consumer({queue: keep}, prefetch=count)
    consumer.start()
    try:
        assert wait_until(lambda: len(got) >= count), f"{len(got)} of {count} from {queue}"
    finally:
        consumer.stop()
    return got

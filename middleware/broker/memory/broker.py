"""The in-memory broker: the broker contract without a network, for the unit tier.

Same contract, same threading as RabbitMQ: publishes are confirmed (or nacked, returned,
refused) through Futures, handlers run on the broker's one loop thread, settlements come from
any thread and are applied in batches with ``before_ack`` first. What a queue does with a
message (routing, TTL, delivery limits, dead-lettering) lives in ``state``. The contract suite
(``tests/broker_contract.py``) runs against this and against RabbitMQ, so it does not drift.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from middleware.broker.contract import Handler, Record
from middleware.broker.memory.consumer import MemoryConsumer
from middleware.broker.memory.loop import Loop
from middleware.broker.memory.state import Message, State
from middleware.broker.properties import PERSISTENT, Properties
from middleware.broker.shortstr import long_property
from middleware.broker.topology import Topology
from middleware.errors import BrokerUnavailable, PublishNacked, PublishReturned

__all__ = ["MemoryBroker", "MemoryPublisher"]


class MemoryBroker:
    """Exchanges and queues in this process; ``topology`` is declared once, at first start."""

    def __init__(self, topology: Topology | None = None) -> None:
        self.loop = Loop()
        self._consumers: dict[str, list[MemoryConsumer]] = {}
        self.state = State(self.dispatch, self.loop.call_later)
        self._topology = topology
        self._declared = False
        self._lock = threading.Lock()
        self.declarations = 0

    @property
    def thread(self) -> threading.Thread:
        return self.loop.thread

    def turning(self) -> bool:
        return self.loop.turning()

    def event_loop(self) -> None:
        """Not an asyncio loop: an asyncio client keeps a loop thread of its own here."""
        return None

    def declare(self, topology: Topology) -> None:
        def run() -> None:
            for exchange in topology.exchanges:
                self.state.declare_exchange(exchange)
            for queue in topology.queues:
                self.state.declare_queue(queue)

        self.loop.run(run)

    def publisher(self, name: str = "publish") -> MemoryPublisher:
        return MemoryPublisher(self, name)

    def consumer(
        self,
        handlers: dict[str, Handler],
        *,
        prefetch: int,
        before_ack: Callable[[list[Record]], Future[None]] | None = None,
        name: str = "consume",
    ) -> MemoryConsumer:
        return MemoryConsumer(self, handlers, prefetch, before_ack)

    def depth(self, queue: str) -> int | None:
        """Messages ready in a queue (None when it is not declared), for tests and tools."""
        return self.loop.run(lambda: len(self.state.queues[queue].messages)
                             if queue in self.state.queues else None)

    def close(self) -> None:
        self.loop.stop()

    # -- for the clients, on the loop ----------------------------------------------------------

    def prepare(self) -> None:
        """Declare the broker's topology unless a client already did (blocking)."""
        with self._lock:
            if self._topology is not None and not self._declared:
                self.declare(self._topology)
                self.declarations += 1
                self._declared = True

    def subscribe(self, queue: str, consumer: MemoryConsumer) -> None:
        if queue not in self.state.queues:
            raise BrokerUnavailable(f"NOT_FOUND - no queue '{queue}'")
        self._consumers.setdefault(queue, []).append(consumer)
        self.dispatch(queue)

    def unsubscribe(self, queue: str, consumer: MemoryConsumer) -> None:
        subscribed = self._consumers.get(queue, [])
        if consumer in subscribed:
            subscribed.remove(consumer)

    def dispatch(self, queue: str) -> None:
        """Hand messages of ``queue`` to its consumers while they have prefetch room."""
        source = self.state.queues[queue]
        self.state.expire(source)
        consumers = self._consumers.get(queue, [])
        while source.messages:
            taker = next((c for c in consumers if c.room(queue)), None)
            if taker is None:
                return
            consumers.remove(taker)  # round robin, as RabbitMQ does
            consumers.append(taker)
            taker.deliver(source, source.messages.popleft())


class MemoryPublisher:
    """Confirmed publishing into a ``MemoryBroker``; the same Futures as RabbitMQ's."""

    def __init__(self, broker: MemoryBroker, name: str) -> None:
        self._broker = broker
        self.name = name
        self._running = threading.Event()
        self.fatal: Exception | None = None
        self.published: list[tuple[str, str, bytes, Properties]] = []  # confirmed, in order

    @property
    def connected(self) -> bool:
        return self._running.is_set() and self._broker.turning()

    def start(self, wait: float | None = None) -> bool:
        try:
            self._broker.prepare()
        except Exception as exc:  # a conflict no reconnect fixes, as on RabbitMQ
            self.fatal = exc
            return False
        self._running.set()
        return True

    def stop(self) -> None:
        self._running.clear()

    def publish(
        self,
        exchange: str,
        routing_key: str,
        body: bytes,
        properties: Properties,
        *,
        purpose: str = "deliver",
        mandatory: bool = True,
        result: Any = None,
    ) -> Future[Any]:
        future: Future[Any] = Future()
        if not self._running.is_set():
            future.set_exception(BrokerUnavailable("not connected to the broker"))
            return future
        properties.delivery_mode = PERSISTENT
        message = Message(body, properties, exchange, routing_key)
        if not self._broker.loop.call_soon(
                lambda: self._route(message, mandatory, future, result)):
            future.set_exception(BrokerUnavailable("not connected to the broker"))
        return future

    def _route(self, message: Message, mandatory: bool, future: Future[Any],
               result: Any) -> None:
        exchange, key = message.exchange, message.routing_key
        too_long = long_property(exchange, key, message.properties)
        if too_long is not None:
            future.set_exception(too_long)
            return
        state = self._broker.state
        if not state.has_exchange(exchange):
            future.set_exception(BrokerUnavailable(
                f"channel closed by the broker: NOT_FOUND - no exchange '{exchange}'"))
            return
        routed = state.route(exchange, message)
        if routed.rejected:
            future.set_exception(PublishNacked("the broker refused the message (nack)"))
        elif routed.unroutable and mandatory:
            future.set_exception(PublishReturned(exchange, key, "NO_ROUTE"))
        else:
            self.published.append((exchange, key, message.body, message.properties))
            future.set_result(result)

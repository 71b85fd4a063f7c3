"""The broker contract: what the pipeline, the ingress and the adapters may rely on.

Two implementations exist: RabbitMQ (``middleware.broker.rabbitmq``, reached only through
``middleware.broker.factory``) and an in-memory broker (``middleware.broker.memory``) for the
unit tier. One contract suite (``tests/broker_contract.py``) runs against both, so the memory
broker cannot drift from what RabbitMQ does: topic routing, the alternate exchange, mandatory
returns, confirms, prefetch, requeue with the redelivered flag and ``x-delivery-count``,
per-queue TTL with dead-lettering and ``x-death``.

Errors are those of ``middleware.errors`` (BrokerUnavailable, PublishNacked, PublishReturned,
PublishTimeout, TopologyConflict, FieldTooLong); no client library's exception crosses here.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, Protocol

from middleware.broker.properties import Properties
from middleware.broker.topology import Topology

__all__ = ["Broker", "Consumer", "Delivery", "Handler", "Publisher", "Record"]

Record = tuple[str, str]  # (route, envelope id): committed before the ack that carries it


class Delivery(Protocol):
    """One message taken from a queue; finish it exactly once with ack() or nack()."""

    body: bytes
    properties: Properties
    redelivered: bool
    received: float  # time.monotonic() when it arrived
    settled: bool

    @property
    def headers(self) -> dict[str, Any]: ...

    def ack(self, record: Record | None = None) -> None:
        """Settle the message; ``record`` is committed (batched) before the ack is sent."""

    def nack(self) -> None:
        """Return the message to its queue (counted against the queue's delivery limit)."""


Handler = Callable[[Delivery], None]


class Publisher(Protocol):
    """Confirmed publishing: ``publish`` never blocks; its Future resolves on the confirm."""

    @property
    def connected(self) -> bool:
        """Whether a publish could go out now (read from liveness, for readiness)."""

    @property
    def fatal(self) -> Exception | None:
        """An error no reconnect can fix (a topology conflict), else None."""

    def start(self, wait: float | None = None) -> bool:
        """Start connecting; with ``wait``, block until connected (True) or not."""

    def stop(self) -> None:
        """Close; publishes still unconfirmed fail with BrokerUnavailable."""

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
        """Send one persistent message; the Future resolves to ``result`` on the confirm or
        fails with a BrokerError (nacked, returned, timed out, no connection) or FieldTooLong."""


class Consumer(Protocol):
    """Consumes a set of queues (queue -> handler) with manual acks and bounded prefetch.

    Handlers run on the broker's I/O thread and must not block; they settle later, from any
    thread. A handler that raises gets its message nacked.
    """

    @property
    def consuming(self) -> bool: ...

    def start(self, wait: float | None = None) -> bool: ...

    def pause(self, timeout: float = 10.0) -> bool:
        """Stop taking new messages; True once no delivery can follow."""

    def stop(self) -> None:
        """Send queued settlements (waiting, bounded, for records still being committed), then
        close; unsettled messages go back to their queues."""


class Broker(Protocol):
    """One broker for one process: its publishers and consumers share one I/O thread."""

    def publisher(self, name: str = "publish") -> Publisher: ...

    def consumer(
        self,
        handlers: dict[str, Handler],
        *,
        prefetch: int,
        before_ack: Callable[[list[Record]], Future[None]] | None = None,
        name: str = "consume",
    ) -> Consumer: ...

    def declare(self, topology: Topology) -> None:
        """Declare exchanges, queues and bindings idempotently (blocking: never on the loop).

        Raises TopologyConflict for an object that exists with other arguments and
        BrokerUnavailable when the broker cannot be reached.
        """

    @property
    def thread(self) -> threading.Thread:
        """The I/O thread every connection of this broker runs on (for the watchdog)."""

    def turning(self) -> bool:
        """Whether the I/O thread is alive and not stalled."""

    def event_loop(self) -> asyncio.AbstractEventLoop | None:
        """The asyncio loop the I/O thread runs, where handlers are called; None if it is not
        one. An asyncio client running there (a REST target) starts and finishes its work
        without a thread hand-over per message; it must never block that loop."""

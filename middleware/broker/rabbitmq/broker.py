"""The RabbitMQ implementation of the broker contract, over pika on one I/O loop thread.

Topology is declared once at start: the publishing and the consuming connection used to run
the same declaration before their first connect (each was handed the topology), so a start cost
two identical rounds of declarations. Now the first connection to connect declares and the
others rely on it; after a lost connection every reconnect declares again, so a broker that
lost its definitions gets them back.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import Future

from middleware.broker.contract import Handler, Record
from middleware.broker.rabbitmq.connection import BrokerLoop
from middleware.broker.rabbitmq.consumer import Consumer
from middleware.broker.rabbitmq.declare import declare
from middleware.broker.rabbitmq.publisher import Publisher
from middleware.broker.topology import Topology
from middleware.config.models import BrokerConfig

__all__ = ["RabbitBroker"]


class RabbitBroker:
    """Publishers and consumers of one process, sharing one ``BrokerLoop``."""

    def __init__(self, config: BrokerConfig, topology: Topology | None = None) -> None:
        self.config = config
        self.loop = BrokerLoop()
        self._topology = topology
        self._declared = False
        self._lock = threading.Lock()
        self.declarations = 0  # how many times the topology was declared (tests read it)

    @property
    def thread(self) -> threading.Thread:
        return self.loop.thread

    def turning(self) -> bool:
        return self.loop.turning()

    def event_loop(self) -> asyncio.AbstractEventLoop:
        return self.loop.ioloop

    def declare(self, topology: Topology) -> None:
        declare(self.config, topology)

    def publisher(self, name: str = "publish") -> Publisher:
        return Publisher(self.config, self._prepare(), name=name, loop=self.loop)

    def consumer(
        self,
        handlers: dict[str, Handler],
        *,
        prefetch: int,
        before_ack: Callable[[list[Record]], Future[None]] | None = None,
        name: str = "consume",
    ) -> Consumer:
        return Consumer(self.config, handlers, prefetch=prefetch, prepare=self._prepare(),
                        before_ack=before_ack, name=name, loop=self.loop)

    def _prepare(self) -> Callable[[], None] | None:
        """A connection's hook run before each connect: the first connect declares only when
        no connection of this broker has declared yet; every reconnect declares."""
        topology = self._topology
        if topology is None:
            return None
        first = True

        def prepare() -> None:
            nonlocal first
            with self._lock:  # two connections starting together declare once, not twice
                if first and self._declared:
                    first = False
                    return
                declare(self.config, topology)
                self.declarations += 1
                self._declared = True
                first = False

        return prepare

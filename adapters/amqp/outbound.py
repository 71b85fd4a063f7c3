"""AMQP outbound adapter: the mapped payload becomes a message on a configured exchange.

Delivery means the broker confirmed it, so the Future is the publisher's own confirm Future and
no thread is spent waiting. The target envelope keeps the source envelope id as its id (the
idempotency key downstream consumers dedupe on) and names the source event as its cause.
"""

from __future__ import annotations

from concurrent.futures import Future
from typing import Any

import orjson

from adapters.amqp.config import AmqpTargetConfig
from middleware.adapter import AdapterContext, Delivered
from middleware.broker.contract import Publisher
from middleware.broker.ingest import envelope_properties
from middleware.broker.topology import ExchangeSpec, QueueSpec, Topology
from middleware.envelope import Envelope

__all__ = ["AmqpTarget"]

_DELIVERED = Delivered()


class AmqpTarget:
    def __init__(self, config: AmqpTargetConfig) -> None:
        self._config = config
        self._publisher: Publisher | None = None

    def topology(self) -> Topology:
        """The target exchange (and optional result queue); ``topology apply`` declares it too."""
        config = self._config
        queues = []
        if config.queue:
            queues.append(QueueSpec(config.queue, {"x-queue-type": "quorum"},
                                    ((config.exchange, config.routing_key),)))
        return Topology([ExchangeSpec(config.exchange, config.exchange_type)], queues)

    def start(self, context: AdapterContext) -> None:
        if context.messaging is not None:  # tools that only publish declare nothing
            context.messaging.declare(self.topology())
        self._publisher = context.publisher

    def deliver(self, envelope: Envelope, payload: Any) -> Future[Delivered]:
        assert self._publisher is not None, "start() must run before deliver()"
        config = self._config
        key = config.routing_key
        if "{" in key:
            key = key.format(type=envelope.type, subject=envelope.subject or "")
        properties = envelope_properties(envelope, type=key)
        if config.envelope:
            body = envelope.to_json(type=key, data=payload, causationid=envelope.id,
                                    hops=envelope.hops + 1)
        else:
            body = orjson.dumps(payload)
            properties.content_type = "application/json"
        # the confirm Future itself is the delivery Future: it resolves to Delivered()
        return self._publisher.publish(config.exchange, key, body, properties,
                                       result=_DELIVERED)

    def close(self) -> None:
        """The publisher belongs to the daemon; nothing of our own to release."""

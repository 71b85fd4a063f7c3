"""The one door to the RabbitMQ implementation.

Everything in ``middleware`` and ``adapters`` that needs a real broker gets it here, so the
import contract "nothing imports ``middleware.broker.rabbitmq`` but the factory" keeps pika out
of the rest of the code. Operators' tools (topology, DLQ, status) need a few blocking calls
beyond the contract; those helpers are re-exported here too (reading ``basic.get`` results and
publishing with the project's ``Properties``), with ``to_pika``/``from_pika`` for the tools that
still publish over the channel themselves.
"""

from __future__ import annotations

from middleware.broker.contract import Broker
from middleware.broker.rabbitmq.broker import RabbitBroker
from middleware.broker.rabbitmq.connection import connection_parameters
from middleware.broker.rabbitmq.convert import from_pika, to_pika
from middleware.broker.rabbitmq.declare import declare
from middleware.broker.rabbitmq.manifest import MANIFEST_QUEUE, read_manifest, write_manifest
from middleware.broker.rabbitmq.session import (
    BlockingChannel,
    Got,
    Session,
    blocking_channel,
    declare_durable,
    delete_queues,
    get_message,
    publish_message,
    purge_queue,
    queue_depth,
)
from middleware.broker.topology import Topology
from middleware.config.models import BrokerConfig

__all__ = [
    "MANIFEST_QUEUE",
    "BlockingChannel",
    "Got",
    "Session",
    "blocking_channel",
    "connect",
    "connection_parameters",
    "declare",
    "declare_durable",
    "delete_queues",
    "from_pika",
    "get_message",
    "publish_message",
    "purge_queue",
    "queue_depth",
    "read_manifest",
    "to_pika",
    "write_manifest",
]


def connect(config: BrokerConfig, topology: Topology | None = None) -> Broker:
    """The RabbitMQ broker of ``config``; ``topology`` is declared before the first connect
    (once for all its connections) and again after every reconnect."""
    return RabbitBroker(config, topology)

"""Declare a topology idempotently over a short-lived blocking connection.

Declaration is a handful of synchronous round trips, done before every (re)connect, so the
asynchronous publish/consume connections never carry declaration state. A queue that exists with
other arguments is reported as TopologyConflict naming the queue and RabbitMQ's own explanation
(which names the argument and both values), not as a channel-closed trace.
"""

from __future__ import annotations

import pika
import pika.exceptions
import structlog

from middleware.broker.rabbitmq.connection import CONNECT_ERRORS, node_parameters
from middleware.broker.rabbitmq.manifest import declared_routes, read_manifest, write_manifest
from middleware.broker.topology import Topology
from middleware.config.models import BrokerConfig
from middleware.errors import BrokerUnavailable, TopologyConflict

__all__ = ["declare"]

log = structlog.get_logger(__name__)

_PRECONDITION_FAILED = 406
_NOT_FOUND = 404


def declare(broker: BrokerConfig, topology: Topology) -> None:
    """Create exchanges, queues and bindings; existing equal ones are left as they are."""
    try:
        connection = pika.BlockingConnection(node_parameters(broker, "declare"))
    except CONNECT_ERRORS as exc:
        raise BrokerUnavailable(f"cannot connect to the broker: {exc!r}") from exc
    try:
        channel = connection.channel()
        for spec in topology.exchanges:
            try:
                channel.exchange_declare(spec.name, exchange_type=spec.type, durable=True,
                                         arguments=spec.arguments)
            except pika.exceptions.ChannelClosedByBroker as exc:
                if exc.reply_code == _PRECONDITION_FAILED:
                    raise TopologyConflict(spec.name, exc.reply_text) from exc
                raise
        for queue in topology.queues:
            try:
                channel.queue_declare(queue.name, durable=True, arguments=queue.arguments)
            except pika.exceptions.ChannelClosedByBroker as exc:
                if exc.reply_code == _PRECONDITION_FAILED:
                    raise TopologyConflict(queue.name, exc.reply_text) from exc
                if _node_down(exc):
                    # a classic queue (a DLQ) whose cluster node is down: it exists and comes
                    # back with its node; failing here kept every connection down with it
                    log.warning("queue unavailable while its node is down; carrying on",
                                queue=queue.name, reason=exc.reply_text)
                    channel = connection.channel()
                    continue
                raise
            for exchange, pattern in queue.bindings:
                channel.queue_bind(queue.name, exchange, routing_key=pattern)
        routes = declared_routes(topology)
        if routes:  # remembered so `topology diff` finds them after they leave the config
            try:
                recorded = read_manifest(channel)
                if any(recorded.get(name, -1) < tiers for name, tiers in routes.items()):
                    write_manifest(channel, {name: max(tiers, recorded.get(name, 0))
                                             for name, tiers in {**recorded, **routes}.items()})
            except pika.exceptions.ChannelClosedByBroker as exc:
                if not _node_down(exc):
                    raise
                log.warning("route manifest unavailable while its node is down; not updated",
                            reason=exc.reply_text)
    except pika.exceptions.AMQPError as exc:
        raise BrokerUnavailable(f"declaring the topology failed: {exc!r}") from exc
    finally:
        if connection.is_open:
            connection.close()




def _node_down(exc: pika.exceptions.ChannelClosedByBroker) -> bool:
    """A classic queue whose cluster node is down (RabbitMQ answers 404 naming its home node)."""
    return exc.reply_code == _NOT_FOUND and "home node" in str(exc.reply_text)

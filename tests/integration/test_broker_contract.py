"""The broker contract suite on the real RabbitMQ, through the broker factory (the same suite
runs on the in-memory broker in ``tests/unit/test_broker_memory.py``)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pika
import pika.exceptions
import pytest

from middleware.broker.factory import connect
from middleware.broker.rabbitmq.broker import RabbitBroker
from middleware.broker.topology import QueueSpec, Topology
from middleware.config.models import BrokerConfig
from tests.broker_contract import BrokerContract, Harness


class TestRabbitBroker(BrokerContract):
    @pytest.fixture
    def harness(self, amqp_url: str, prefix: str) -> Iterator[Harness]:
        harness = Harness(connect(BrokerConfig(url=amqp_url, publish_timeout=5)), prefix)
        yield harness
        connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
        try:
            for topology in harness.declared:
                for queue in topology.queues:
                    with contextlib.suppress(pika.exceptions.AMQPError):
                        connection.channel().queue_delete(queue.name)
                for exchange in topology.exchanges:
                    with contextlib.suppress(pika.exceptions.AMQPError):
                        connection.channel().exchange_delete(exchange.name)
        finally:
            connection.close()


def test_rabbit_broker_declares_the_topology_once_for_both_connections(
    amqp_url: str, prefix: str, amqp_channel: pika.adapters.blocking_connection.BlockingChannel,
) -> None:
    # Given a broker whose publisher and consumer both need the topology before connecting
    queue = f"{prefix}.q"
    topology = Topology([], [QueueSpec(queue, {"x-queue-type": "quorum"})])
    broker = connect(BrokerConfig(url=amqp_url), topology)
    assert isinstance(broker, RabbitBroker)
    publisher = broker.publisher()
    consumer = broker.consumer({queue: lambda d: d.ack()}, prefetch=1)
    try:
        # When both start, as the daemon starts them
        assert publisher.start(wait=10)
        assert consumer.start(wait=10)
        # Then the declaration ran once (it used to run once per connection)
        assert broker.declarations == 1
    finally:
        consumer.stop()
        publisher.stop()
        amqp_channel.queue_delete(queue)

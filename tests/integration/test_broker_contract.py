"""The broker contract suite on the real RabbitMQ, through the broker factory (the same suite
runs on the in-memory broker in ``tests/unit/test_broker_memory.py``)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pika
import pika.exceptions
import pytest

from middleware.broker.factory import connect
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

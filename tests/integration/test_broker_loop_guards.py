"""Issue 11.1: nothing raises out of a callback on the broker I/O loop (real RabbitMQ).

A message pika refuses fails alone, with the publisher's confirm numbering intact; a handler
that raises, or a batch whose records cannot be committed, costs that message a redelivery,
never the loop.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import Future

import pytest
from pika.adapters.blocking_connection import BlockingChannel
from prometheus_client import REGISTRY

from middleware.broker.properties import Properties
from middleware.broker.rabbitmq.consumer import Consumer, Delivery, Record
from middleware.broker.rabbitmq.publisher import Publisher
from middleware.config.models import BrokerConfig
from middleware.errors import FieldTooLong
from tests.integration.helpers import queue_count

pytestmark = pytest.mark.integration


@pytest.fixture
def queue(amqp_channel: BlockingChannel, prefix: str) -> Iterator[str]:
    name = f"{prefix}.guards"
    amqp_channel.queue_declare(name, durable=True, arguments={"x-queue-type": "quorum"})
    yield name
    amqp_channel.queue_delete(name)


@pytest.fixture
def publisher(amqp_url: str) -> Iterator[Publisher]:
    publisher = Publisher(BrokerConfig(url=amqp_url, publish_timeout=5), name="guards")
    assert publisher.start(wait=10), "cannot connect to the broker"
    yield publisher
    publisher.stop()


def _errors(where: str) -> float:
    return REGISTRY.get_sample_value("silobridge_broker_callback_errors_total",
                                     {"where": where}) or 0.0


def _reconnects(connection: str) -> float:
    return REGISTRY.get_sample_value("silobridge_reconnects_total",
                                     {"connection": connection}) or 0.0


def _properties(message_id: str) -> Properties:
    return Properties(message_id=message_id, content_type="application/json")


def test_publisher_message_id_of_300_bytes_fails_alone_and_the_next_100_confirm(
    amqp_url: str, queue: str, publisher: Publisher,
) -> None:
    before = _errors("publish")
    # Given a burst with one message pika cannot encode in the middle of it
    first = [publisher.publish("", queue, b"{}", _properties(f"m-{n}")) for n in range(50)]
    bad = publisher.publish("", queue, b"{}", _properties("x" * 300))
    later = [publisher.publish("", queue, b"{}", _properties(f"m-{n}")) for n in range(50, 100)]
    # Then that message's Future fails with an error naming the property
    with pytest.raises(FieldTooLong) as caught:
        bad.result(10)
    assert caught.value.field == "message_id" and caught.value.size == 300
    # And every other message is confirmed: the confirm tags stayed aligned
    assert [future.result(10) for future in first + later] == [None] * 100
    assert queue_count(amqp_url, queue) == 100
    assert _errors("publish") == before + 1
    assert publisher.connected and publisher.loop.thread.is_alive()
    # And the publisher goes on confirming afterwards
    assert publisher.publish("", queue, b"{}", _properties("after")).result(10) is None


def test_consumer_handler_that_raises_costs_one_redelivery_not_the_loop(
    amqp_url: str, queue: str, publisher: Publisher,
) -> None:
    seen: list[bool] = []
    done = threading.Event()

    def handler(delivery: Delivery) -> None:
        seen.append(delivery.redelivered)
        if not delivery.redelivered:
            raise RuntimeError("a bug in the handler")
        delivery.ack()
        done.set()

    before = _errors("deliver")
    consumer = Consumer(BrokerConfig(url=amqp_url), {queue: handler}, prefetch=10,
                        name="guards-consume", loop=publisher.loop)
    assert consumer.start(wait=10)
    try:
        publisher.publish("", queue, b"{}", _properties("once")).result(10)
        # Then the message came back (nacked, not lost) and was handled on the same loop
        assert done.wait(10), seen
        assert seen == [False, True]
        assert _errors("deliver") == before + 1
        # by a nack of that message alone: pika would have dropped the whole connection
        assert _reconnects("guards-consume") == 0
        assert consumer.consuming and publisher.loop.turning()
    finally:
        consumer.stop()
    assert queue_count(amqp_url, queue) == 0


def test_consumer_commit_that_fails_nacks_the_batch_and_it_comes_back(
    amqp_url: str, queue: str, publisher: Publisher,
) -> None:
    committed: list[list[Record]] = []
    failures = [RuntimeError("store down")]

    def before_ack(records: list[Record]) -> Future[None]:
        done: Future[None] = Future()
        if failures:
            done.set_exception(failures.pop())
        else:
            committed.append(records)
            done.set_result(None)
        return done

    acked = threading.Event()

    def handler(delivery: Delivery) -> None:
        delivery.ack(("route", "evt-1"))
        if delivery.redelivered:
            acked.set()

    before = _errors("settle")
    consumer = Consumer(BrokerConfig(url=amqp_url), {queue: handler}, prefetch=10,
                        before_ack=before_ack, name="guards-commit", loop=publisher.loop)
    assert consumer.start(wait=10)
    try:
        publisher.publish("", queue, b"{}", _properties("evt-1")).result(10)
        assert acked.wait(10)
        assert _errors("settle") == before + 1
        assert _reconnects("guards-commit") == 0
    finally:
        consumer.stop()
    # acked only once its record was durable; nothing left behind
    assert committed == [[("route", "evt-1")]]
    assert queue_count(amqp_url, queue) == 0

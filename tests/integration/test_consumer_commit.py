"""The consumer's commit before acks runs off the broker loop and holds only its own acks.

``before_ack`` returns a Future at once (the commit runs on a route's store threads); the
messages whose records it carries are acked when it completes, back on the loop, and not before:
a connection lost meanwhile returns them to the queue. Other acks are not held behind it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future

import pytest
from pika.adapters.blocking_connection import BlockingChannel

from middleware.broker.contract import Record
from middleware.broker.properties import Properties
from middleware.broker.rabbitmq.consumer import Consumer, Delivery
from middleware.broker.rabbitmq.publisher import Publisher
from middleware.config.models import BrokerConfig
from tests.integration.helpers import queue_count, wait_until

pytestmark = pytest.mark.integration


@pytest.fixture
def queue(amqp_channel: BlockingChannel, prefix: str) -> Iterator[str]:
    name = f"{prefix}.commit"
    amqp_channel.queue_declare(name, durable=True, arguments={"x-queue-type": "quorum"})
    yield name
    amqp_channel.queue_delete(name)


@pytest.fixture
def publisher(amqp_url: str) -> Iterator[Publisher]:
    publisher = Publisher(BrokerConfig(url=amqp_url, publish_timeout=5), name="commit")
    assert publisher.start(wait=10), "cannot connect to the broker"
    yield publisher
    publisher.stop()


class PendingCommits:
    """A ``before_ack`` whose commits complete only when the test says so."""

    def __init__(self) -> None:
        self.pending: list[tuple[list[Record], Future[None]]] = []
        self.called = threading.Event()

    def __call__(self, records: list[Record]) -> Future[None]:
        future: Future[None] = Future()
        self.pending.append((records, future))
        self.called.set()
        return future


def _consumer(amqp_url: str, queue: str, publisher: Publisher, commits: PendingCommits,
              handler: object) -> Consumer:
    assert callable(handler)
    consumer = Consumer(BrokerConfig(url=amqp_url), {queue: handler}, prefetch=10,
                        before_ack=commits, name="commit-consume", loop=publisher.loop)
    assert consumer.start(wait=10)
    return consumer


def _publish(publisher: Publisher, queue: str, message_id: str) -> None:
    publisher.publish("", queue, b"{}", Properties(message_id=message_id)).result(10)


def test_consumer_holds_the_ack_until_the_commit_completes(
    amqp_url: str, queue: str, publisher: Publisher,
) -> None:
    # Given a consumer whose commit has not completed yet
    commits = PendingCommits()
    consumer = _consumer(amqp_url, queue, publisher, commits,
                         lambda d: d.ack(("route", d.properties.message_id)))
    try:
        _publish(publisher, queue, "evt-1")
        assert commits.called.wait(10)
        [(records, _)] = commits.pending
        assert records == [("route", "evt-1")]
    finally:
        # When the connection goes before the commit completed (stop waits for it, bounded)
        consumer.stop(commit_wait=0.2)
    # Then the message was not acked: the broker has it ready again
    assert wait_until(lambda: queue_count(amqp_url, queue) == 1, 10)


def test_consumer_acks_without_a_record_go_out_past_a_pending_commit(
    amqp_url: str, queue: str, publisher: Publisher,
) -> None:
    commits = PendingCommits()
    handled = threading.Semaphore(0)
    consumer = _consumer(amqp_url, queue, publisher, commits, _counting(handled))
    try:
        # Given one message whose commit is pending, then one acked without a record
        _publish(publisher, queue, "evt-1")
        _publish(publisher, queue, "filtered")
        assert handled.acquire(timeout=10) and handled.acquire(timeout=10)
        assert commits.called.wait(10)
        flushed = threading.Event()
        publisher.loop.call_soon(flushed.set)  # the acks queued before this have gone out
        assert flushed.wait(5)
    finally:
        consumer.stop(commit_wait=0.2)  # the commit never completes: stop waits only so long
    # Then only the message waiting for its commit came back: the other one was acked at once,
    # and no "multiple" ack covered the one still waiting
    assert wait_until(lambda: queue_count(amqp_url, queue) == 1, 10)


def test_consumer_acks_once_the_commit_completes(
    amqp_url: str, queue: str, publisher: Publisher,
) -> None:
    commits = PendingCommits()
    handled = threading.Semaphore(0)
    consumer = _consumer(amqp_url, queue, publisher, commits, _counting(handled))
    try:
        _publish(publisher, queue, "evt-1")
        assert commits.called.wait(10)
        # When the commit completes (on another thread, as a store thread would)
        [(_, future)] = commits.pending
        completing = threading.Thread(target=future.set_result, args=(None,))
        completing.start()
        completing.join(5)
        acked = threading.Event()
        publisher.loop.call_soon(acked.set)  # after the ack the completion scheduled
        assert acked.wait(5)
    finally:
        consumer.stop()
    # Then the message was acked: nothing comes back
    assert queue_count(amqp_url, queue) == 0


def _counting(handled: threading.Semaphore) -> Callable[[Delivery], None]:
    def handle(delivery: Delivery) -> None:
        message_id = delivery.properties.message_id
        delivery.ack(("route", message_id) if message_id.startswith("evt") else None)
        handled.release()

    return handle

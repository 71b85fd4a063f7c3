"""Publisher and topology semantics on the real RabbitMQ: confirms, returns, nacks, alarms."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, wait

import pika
import pytest

from middleware.broker.properties import Properties
from middleware.broker.rabbitmq.declare import declare
from middleware.broker.rabbitmq.loopfuture import LoopFuture
from middleware.broker.rabbitmq.publisher import Publisher
from middleware.broker.topology import ExchangeSpec, QueueSpec, Topology
from middleware.config.models import BrokerConfig
from middleware.errors import (
    BrokerUnavailable,
    PublishNacked,
    PublishReturned,
    TopologyConflict,
)
from tests.integration.broker_control import require_rabbitmqctl
from tests.integration.helpers import wait_until

pytestmark = pytest.mark.integration


@pytest.fixture
def broker(amqp_url: str) -> BrokerConfig:
    return BrokerConfig(url=amqp_url, publish_timeout=5, blocked_timeout=2)


@pytest.fixture
def publisher(broker: BrokerConfig, prefix: str, amqp_url: str) -> Iterator[Publisher]:
    topology = Topology(
        [ExchangeSpec(f"{prefix}.x")],
        [QueueSpec(f"{prefix}.q", {"x-queue-type": "quorum"}, ((f"{prefix}.x", "bound.#"),)),
         QueueSpec(f"{prefix}.small", {"x-max-length": 1, "x-overflow": "reject-publish"},
                   ((f"{prefix}.x", "small"),))],
    )
    publisher = Publisher(broker, lambda: declare(broker, topology))
    assert publisher.start(wait=10)
    yield publisher
    publisher.stop()
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    channel = connection.channel()
    channel.queue_delete(f"{prefix}.q")
    channel.queue_delete(f"{prefix}.small")
    channel.exchange_delete(f"{prefix}.x")
    connection.close()


def props(n: int) -> Properties:
    return Properties(message_id=f"m-{n}")


def test_publisher_pipelines_confirms_without_waiting_per_message(
    publisher: Publisher, prefix: str, amqp_channel: pika.adapters.blocking_connection.
    BlockingChannel,
) -> None:
    futures = [publisher.publish(f"{prefix}.x", "bound.a", b"{}", props(n)) for n in range(3000)]
    # publish() returned for all 3,000 before most confirms arrived: many were in flight at once
    assert sum(not f.done() for f in futures) > 100
    done, not_done = wait(futures, timeout=30)
    assert not not_done and all(f.exception() is None for f in done)
    assert amqp_channel.queue_declare(f"{prefix}.q", passive=True).method.message_count == 3000


def test_publishes_on_the_loop_thread_confirm_through_loop_futures(
    publisher: Publisher, prefix: str,
) -> None:
    """A worker publishes on the broker loop thread: its Futures are LoopFutures (no lock per
    message), resolved by the real confirms and returns on that thread, callbacks there too."""
    seen: list[tuple[str, bool, BaseException | None]] = []
    finished = threading.Event()

    def publish_from_loop() -> None:
        futures = [publisher.publish(f"{prefix}.x", "bound.l", b"{}", props(n))
                   for n in range(200)]
        futures.append(publisher.publish(f"{prefix}.x", "nobody.listens", b"{}", props(200)))
        assert all(isinstance(f, LoopFuture) for f in futures)
        remaining = [len(futures)]

        def done(future: Future[object]) -> None:
            seen.append((threading.current_thread().name, future.done(), future.exception()))
            remaining[0] -= 1
            if not remaining[0]:
                finished.set()

        for future in futures:
            future.add_done_callback(done)

    assert publisher.loop.call_soon(publish_from_loop)
    assert finished.wait(30)
    assert {name for name, _done, _error in seen} == {publisher.loop.thread.name}
    assert all(is_done for _name, is_done, _error in seen)
    errors = [error for _name, _done, error in seen]  # in confirm order, not publish order
    assert errors.count(None) == 200
    assert [type(e) for e in errors if e is not None] == [PublishReturned]
    # off the loop thread, publish still hands out a Future that can be waited for
    off_loop = publisher.publish(f"{prefix}.x", "bound.m", b"{}", props(201))
    assert not isinstance(off_loop, LoopFuture)
    assert off_loop.result(10) is None


def test_publisher_reports_unroutable_messages(publisher: Publisher, prefix: str) -> None:
    future = publisher.publish(f"{prefix}.x", "nobody.listens", b"{}", props(1))
    with pytest.raises(PublishReturned, match=r"no binding for routing key 'nobody.listens'"):
        future.result(10)
    # the channel survives: the next routable message is confirmed
    publisher.publish(f"{prefix}.x", "bound.b", b"{}", props(2)).result(10)
    assert publisher.renewals == 0  # a return is no nack: the channel is kept


def test_publisher_reports_nacks_from_a_full_queue(publisher: Publisher, prefix: str) -> None:
    publisher.publish(f"{prefix}.x", "small", b"{}", props(1)).result(10)
    with pytest.raises(PublishNacked):
        publisher.publish(f"{prefix}.x", "small", b"{}", props(2)).result(10)


def test_publisher_renews_its_channel_after_nacks_once_not_per_nack(
    publisher: Publisher, prefix: str
) -> None:
    # Given a full queue that refuses more (overflow reject-publish)
    publisher.publish(f"{prefix}.x", "small", b"{}", props(1)).result(10)
    # When twenty publishes to it are nacked
    futures = [publisher.publish(f"{prefix}.x", "small", b"{}", props(n)) for n in range(2, 22)]
    errors = [future.exception(10) for future in futures]
    assert any(isinstance(error, PublishNacked) for error in errors)
    # (those still awaiting their nack when the channel was renewed failed as on a lost channel)
    assert all(isinstance(error, PublishNacked | BrokerUnavailable) for error in errors), errors
    # Then the channel is renewed once (RabbitMQ 3.10 can keep nacking a channel: Publisher),
    # and the publisher carries on on the new one
    assert wait_until(lambda: publisher.renewals == 1 and publisher.connected, 5)
    publisher.publish(f"{prefix}.x", "bound.e", b"{}", props(30)).result(10)
    assert publisher.renewals == 1


def test_publisher_fails_fast_when_not_connected(broker: BrokerConfig) -> None:
    publisher = Publisher(broker)
    with pytest.raises(BrokerUnavailable, match="not connected"):
        publisher.publish("x", "y", b"{}", props(1)).result(1)


def test_publisher_fails_within_bounded_time_under_a_resource_alarm(
    publisher: Publisher, prefix: str
) -> None:
    require_rabbitmqctl()
    # Given the broker raises a memory alarm, which blocks every publishing connection
    subprocess.run(["rabbitmqctl", "-q", "set_vm_memory_high_watermark", "0.000001"],
                   check=True, timeout=60)
    try:
        started = time.monotonic()
        future = publisher.publish(f"{prefix}.x", "bound.c", b"{}", props(1))
        # Then the publish fails after the configured blocked timeout instead of hanging
        with pytest.raises((BrokerUnavailable, PublishNacked)):
            future.result(15)
        assert time.monotonic() - started < 10
    finally:
        subprocess.run(["rabbitmqctl", "-q", "set_vm_memory_high_watermark", "0.4"],
                       check=True, timeout=60)
    # And once the alarm clears, the publisher reconnects by itself
    deadline = time.monotonic() + 20
    while not publisher.connected and time.monotonic() < deadline:
        time.sleep(0.1)
    publisher.publish(f"{prefix}.x", "bound.d", b"{}", props(2)).result(10)


def test_topology_conflict_names_queue_and_argument(
    broker: BrokerConfig, prefix: str, amqp_channel: pika.adapters.blocking_connection.
    BlockingChannel,
) -> None:
    name = f"{prefix}.conflict"
    amqp_channel.queue_declare(name, durable=True, arguments={"x-queue-type": "quorum",
                                                              "x-delivery-limit": 5})
    try:
        wanted = Topology([], [QueueSpec(name, {"x-queue-type": "quorum",
                                                "x-delivery-limit": 20})])
        with pytest.raises(TopologyConflict) as caught:
            declare(broker, wanted)
        message = str(caught.value)
        assert name in message and "x-delivery-limit" in message
        # declaring the same arguments again is a no-op
        declare(broker, Topology([], [QueueSpec(name, {"x-queue-type": "quorum",
                                                       "x-delivery-limit": 5})]))
    finally:
        amqp_channel.queue_delete(name)

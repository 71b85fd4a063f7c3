"""Case 6: an operator deletes a route queue, or the events exchange, while the daemon runs.

The queue case runs on the shared broker (the queue is the test's own); deleting the events
exchange would hit everyone's tests there, so that case runs on a RabbitMQ node of its own.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pika
import pytest

from middleware.broker.properties import Properties
from middleware.broker.topology import EVENTS_EXCHANGE, queue_name
from middleware.config.loader import LoadedConfig
from middleware.daemon import Daemon, Role
from middleware.errors import BrokerError
from tests.faults.results import record
from tests.faults.targets import GatedTarget, gated_route
from tests.integration.extra_node import ExtraNode, require_node_tools
from tests.integration.helpers import publish_events, queue_count, wait_until


def _delete_queue(url: str, queue: str) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        connection.channel().queue_delete(queue)
    finally:
        connection.close()


def test_route_queue_deleted_is_redeclared_and_consumed_again_and_in_flight_is_delivered(
    amqp_url: str, prefix: str, make_config: Callable[..., LoadedConfig],
    run_daemon: Callable[[LoadedConfig], Daemon],
) -> None:
    # Given a worker holding one event in flight (its target has not answered yet)
    route = f"{prefix}-r"
    daemon = run_daemon(make_config([gated_route(prefix)]))
    target = GatedTarget.instances[prefix]
    [held] = publish_events(amqp_url, prefix, 1)
    assert wait_until(lambda: target.received == [held], 10)
    # When an operator deletes the route queue
    _delete_queue(amqp_url, queue_name(route))
    deleted = time.monotonic()
    # Then the queue comes back and the consumer with it
    assert wait_until(lambda: _exists(amqp_url, queue_name(route))
                      and all(daemon.readiness().values()), 30, step=0.05)
    target.open_gate()
    assert wait_until(lambda: _consumers(amqp_url, queue_name(route)) == 1, 30, step=0.05)
    recovered = time.monotonic() - deleted
    # And the event that was in flight is delivered, and new events are consumed again
    after = publish_events(amqp_url, prefix, 5)
    assert wait_until(lambda: set(after) <= set(target.completed), 20)
    assert held in target.completed
    assert wait_until(lambda: queue_count(amqp_url, queue_name(route)) == 0, 10)
    record("queue_deleted", observed="route queue deleted with one event in flight: queue "
           "re-declared, consumer back, the held event and 5 new ones delivered",
           lost=0, duplicates=len(target.completed) - len(set(target.completed)),
           recovery_seconds=round(recovered, 1))


def _exists(url: str, queue: str) -> bool:
    try:
        queue_count(url, queue)
    except pika.exceptions.ChannelClosedByBroker:
        return False
    return True


def _consumers(url: str, queue: str) -> int:
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        frame = connection.channel().queue_declare(queue, passive=True)
        return int(frame.method.consumer_count)
    except pika.exceptions.ChannelClosedByBroker:
        return 0
    finally:
        if connection.is_open:
            connection.close()


@pytest.fixture
def own_node(tmp_path: Path) -> Iterator[ExtraNode]:
    require_node_tools()
    with ExtraNode(tmp_path) as node:
        yield node


def test_events_exchange_deleted_is_redeclared_and_ingress_publishing_resumes(
    own_node: ExtraNode, prefix: str, make_config: Callable[..., LoadedConfig],
) -> None:
    # Given a daemon on a node of its own, delivering
    loaded = make_config([gated_route(prefix)], broker={
        "url": own_node.url, "publish_timeout": 3, "reconnect_max_delay": 2})
    daemon = Daemon(loaded, Role.WORKER)
    daemon.start()
    try:
        target = GatedTarget.instances[prefix]
        target.open_gate()
        first = publish_events(own_node.url, prefix, 3)
        assert wait_until(lambda: set(first) <= set(target.completed), 20)
        # When an operator deletes the events exchange (and with it every binding)
        connection = pika.BlockingConnection(pika.URLParameters(own_node.url))
        connection.channel().exchange_delete(EVENTS_EXCHANGE)
        connection.close()
        deleted = time.monotonic()
        assert not _exchange_exists(own_node.url, EVENTS_EXCHANGE)
        # Then the daemon's next publish fails on it, it reconnects, and the exchange and the
        # route's binding are declared again; events published afterwards are delivered
        publisher = daemon.publisher
        future = publisher.publish(EVENTS_EXCHANGE, f"{prefix}.customer.updated", b"{}",
                                   Properties(message_id=f"{prefix}-probe"))
        with pytest.raises(BrokerError):  # the channel closed on it: not confirmed
            future.result(10)
        assert wait_until(lambda: _exchange_exists(own_node.url, EVENTS_EXCHANGE)
                          and all(daemon.readiness().values()), 30, step=0.05)
        recovered = time.monotonic() - deleted
        later = publish_events(own_node.url, prefix, 3)
        assert wait_until(lambda: set(later) <= set(target.completed), 20)
    finally:
        daemon.stop()
    record("exchange_deleted", observed="events exchange deleted: the next publish failed "
           "(not confirmed), the publisher reconnected, exchange and binding re-declared, "
           "later events delivered", lost=0, duplicates=0, recovery_seconds=round(recovered, 1))


def _exchange_exists(url: str, exchange: str) -> bool:
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        connection.channel().exchange_declare(exchange, passive=True)
        return True
    except pika.exceptions.ChannelClosedByBroker:
        return False
    finally:
        if connection.is_open:
            connection.close()

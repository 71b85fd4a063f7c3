"""Short blocking broker sessions for tools and background chores (depths, browsing, cleanup).

The daemon's message flow runs on the asynchronous connections; operators' commands and the
monitor only need a few synchronous round trips, on a connection of their own that never
touches the daemon's. The helpers below (``get_message``, ``publish_message``, ``purge_queue``,
``declare_durable``) speak the project's ``Properties`` and errors, so the DLQ tools above the
seam use a channel without importing pika.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pika
import pika.exceptions
from pika.adapters.blocking_connection import BlockingChannel

from middleware.broker.properties import Properties
from middleware.broker.rabbitmq.connection import CONNECT_ERRORS, connection_parameters
from middleware.broker.rabbitmq.convert import from_pika, to_pika
from middleware.config.models import BrokerConfig
from middleware.errors import BrokerUnavailable

__all__ = ["BlockingChannel", "Got", "Session", "blocking_channel", "declare_durable",
           "delete_queues", "get_message", "publish_message", "purge_queue", "queue_depth"]

_PRECONDITION_FAILED = 406


class Session:
    """A blocking connection kept between uses (a periodic chore should not reconnect every
    time) and reopened after a failure; pika errors leave it as BrokerUnavailable."""

    def __init__(self, broker: BrokerConfig, name: str) -> None:
        self._broker = broker
        self._name = name
        self._connection: pika.BlockingConnection | None = None

    @contextlib.contextmanager
    def channel(self) -> Iterator[BlockingChannel]:
        """A fresh channel, closed afterwards (unacked basic.get messages go back)."""
        try:
            if self._connection is None or not self._connection.is_open:
                self._connection = pika.BlockingConnection(
                    connection_parameters(self._broker, self._name))
            channel = self._connection.channel()
        except CONNECT_ERRORS as exc:
            self.close()
            raise BrokerUnavailable(f"cannot connect to the broker: {exc!r}") from exc
        try:
            yield channel
        except (pika.exceptions.AMQPError, OSError) as exc:
            self.close()
            raise BrokerUnavailable(f"broker session failed: {exc!r}") from exc
        finally:  # any other error too: a kept connection must not collect open channels
            if channel.is_open:
                with contextlib.suppress(pika.exceptions.AMQPError, OSError):
                    channel.close()

    def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None and connection.is_open:
            with contextlib.suppress(pika.exceptions.AMQPError, OSError):
                connection.close()


@contextlib.contextmanager
def blocking_channel(broker: BrokerConfig, name: str) -> Iterator[BlockingChannel]:
    """A channel on a connection of its own, both closed afterwards."""
    session = Session(broker, name)
    try:
        with session.channel() as channel:
            yield channel
    finally:
        session.close()


def queue_depth(channel: BlockingChannel, queue: str) -> int | None:
    """Messages ready in a queue; None when it is not declared.

    The passive declare runs on a throwaway channel, since a missing queue closes the channel.
    """
    probe = channel.connection.channel()
    try:
        count = int(probe.queue_declare(queue, passive=True).method.message_count)
    except pika.exceptions.ChannelClosedByBroker:
        return None
    probe.close()
    return count


def delete_queues(channel: BlockingChannel, names: list[str]) -> None:
    for name in names:
        channel.queue_delete(name)


@dataclass(frozen=True)
class Got:
    """A message taken with basic.get and not acked yet: the channel's tag to ack it with."""

    tag: int
    properties: Properties
    body: bytes


def get_message(channel: BlockingChannel, queue: str) -> Got | None:
    """The next message of ``queue`` (unacked: closing the channel puts it back); None when
    the queue is empty."""
    method, properties, body = channel.basic_get(queue, auto_ack=False)
    if method is None:
        return None
    return Got(method.delivery_tag, from_pika(properties), body)


def publish_message(channel: BlockingChannel, exchange: str, routing_key: str, body: bytes,
                    properties: Properties) -> None:
    """Publish, mandatory: on a channel in confirm mode this returns once the broker confirmed,
    and an unroutable or nacked message fails the session (BrokerUnavailable)."""
    channel.basic_publish(exchange, routing_key, body, to_pika(properties), mandatory=True)


def purge_queue(channel: BlockingChannel, queue: str) -> int:
    """Delete every ready message of ``queue``; returns how many there were."""
    return int(channel.queue_purge(queue).method.message_count)


def declare_durable(channel: BlockingChannel, queue: str, arguments: dict[str, Any]) -> bool:
    """Declare ``queue`` with ``arguments``; False when it exists with other ones (a different
    queue type). The declare runs on a throwaway channel, which that refusal closes."""
    probe = channel.connection.channel()
    try:
        probe.queue_declare(queue, durable=True, arguments=arguments)
    except pika.exceptions.ChannelClosedByBroker as exc:
        if exc.reply_code != _PRECONDITION_FAILED:
            raise
        return False
    probe.close()
    return True

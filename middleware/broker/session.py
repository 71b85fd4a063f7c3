"""Short blocking broker sessions for tools and background chores (depths, browsing, cleanup).

The daemon's message flow runs on the asynchronous connections; operators' commands and the
monitor only need a few synchronous round trips, on a connection of their own that never
touches the daemon's.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pika
import pika.exceptions
from pika.adapters.blocking_connection import BlockingChannel

from middleware.broker.connection import CONNECT_ERRORS, connection_parameters
from middleware.config.models import BrokerConfig
from middleware.errors import BrokerUnavailable

__all__ = ["BlockingChannel", "Session", "blocking_channel", "delete_queues", "queue_depth"]


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

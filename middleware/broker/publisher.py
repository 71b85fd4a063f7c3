"""Pipelined publishing with publisher confirms: many messages in flight, one Future each.

``publish`` may be called from any thread and never waits for the broker: the message is handed
to the connection's thread, sent persistent and mandatory, and its Future resolves when the
broker confirms it, or fails with PublishNacked, PublishReturned (unroutable), PublishTimeout, or
BrokerUnavailable (no connection, or the connection was lost before the confirm).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import pika
from pika.channel import Channel
from pika.spec import Basic

from middleware import metrics
from middleware.broker.connection import ConnectionThread
from middleware.broker.topology import Topology
from middleware.config.models import BrokerConfig
from middleware.errors import (
    BrokerError,
    BrokerUnavailable,
    PublishNacked,
    PublishReturned,
    PublishTimeout,
)

__all__ = ["Publisher"]

_PERSISTENT = 2


@dataclass
class _Pending:
    future: Future[None]
    message_id: str | None
    purpose: str
    sent_at: float
    returned: BrokerError | None = None


@dataclass
class _Outgoing:
    exchange: str
    routing_key: str
    body: bytes
    properties: pika.BasicProperties
    future: Future[None]
    purpose: str
    mandatory: bool = True
    created: float = field(default_factory=time.monotonic)


class Publisher:
    """Owns the publishing connection; thread-safe ``publish`` returning a confirm Future."""

    def __init__(
        self,
        broker: BrokerConfig,
        topology: Topology | None = None,
        name: str = "publish",
    ) -> None:
        from middleware.broker.declare import declare

        self._timeout = broker.publish_timeout
        self._outgoing: deque[_Outgoing] = deque()
        self._pending: dict[int, _Pending] = {}
        self._seq = 0
        self._channel: Channel | None = None
        self._flush_scheduled = False
        self._lock = threading.Lock()
        prepare = None if topology is None else (lambda: declare(broker, topology))
        self._thread = ConnectionThread(name, broker, self._on_channel, self._on_lost, prepare)

    @property
    def connected(self) -> bool:
        return self._thread.ready.is_set()

    @property
    def fatal(self) -> Exception | None:
        return self._thread.fatal

    def start(self, wait: float | None = None) -> bool:
        """Start the connection thread; with ``wait``, block until connected (True) or not."""
        self._thread.start()
        return self._thread.ready.wait(wait) if wait else False

    def stop(self) -> None:
        self._thread.stop()
        self._fail_all(BrokerUnavailable("publisher stopped"))

    def publish(
        self,
        exchange: str,
        routing_key: str,
        body: bytes,
        properties: pika.BasicProperties,
        *,
        purpose: str = "deliver",
        mandatory: bool = True,
    ) -> Future[None]:
        """Send one persistent message; the Future resolves on the broker's confirm."""
        future: Future[None] = Future()
        if not self._thread.ready.is_set():
            future.set_exception(BrokerUnavailable("not connected to the broker"))
            return future
        properties.delivery_mode = _PERSISTENT
        item = _Outgoing(exchange, routing_key, body, properties, future, purpose, mandatory)
        with self._lock:
            self._outgoing.append(item)
            schedule = not self._flush_scheduled
            self._flush_scheduled = True
        if schedule and not self._thread.call_soon(self._flush):
            with self._lock:
                self._flush_scheduled = False
            self._drain(BrokerUnavailable("not connected to the broker"))
        return future

    # -- the connection's thread ------------------------------------------------------------

    def _on_channel(self, channel: Channel) -> None:
        self._seq = 0
        self._pending.clear()
        channel.confirm_delivery(ack_nack_callback=self._on_confirm)
        channel.add_on_return_callback(self._on_return)
        self._channel = channel
        self._thread.call_soon(self._sweep)
        self._flush()

    def _on_lost(self) -> None:
        self._channel = None
        self._fail_all(BrokerUnavailable("broker connection lost before the confirm"))

    def _flush(self) -> None:
        with self._lock:
            self._flush_scheduled = False
            batch = list(self._outgoing)
            self._outgoing.clear()
        channel = self._channel
        now = time.monotonic()
        for item in batch:
            if channel is None or not channel.is_open:
                _fail(item.future, BrokerUnavailable("not connected to the broker"))
                continue
            self._seq += 1
            self._pending[self._seq] = _Pending(
                item.future, item.properties.message_id, item.purpose, now
            )
            channel.basic_publish(
                item.exchange, item.routing_key, item.body, item.properties,
                mandatory=item.mandatory,
            )

    def _on_confirm(self, frame: Any) -> None:
        method = frame.method
        tag: int = method.delivery_tag
        acked = isinstance(method, Basic.Ack)
        tags = [tag]
        if method.multiple:  # pending is in tag order: stop at the first later tag
            tags = []
            for pending_tag in self._pending:
                if pending_tag > tag:
                    break
                tags.append(pending_tag)
        for t in tags:
            entry = self._pending.pop(t, None)
            if entry is None:
                continue
            if entry.returned is not None:
                _fail(entry.future, entry.returned)
            elif acked:
                metrics.PUBLISHED.labels(entry.purpose).inc()
                if not entry.future.done():
                    entry.future.set_result(None)
            else:
                _fail(entry.future, PublishNacked("the broker refused the message (nack)"))

    def _on_return(
        self, _channel: Channel, method: Basic.Return, properties: pika.BasicProperties,
        _body: bytes,
    ) -> None:
        # Returns arrive before the confirm of the same message and in publish order, so the
        # oldest pending entry with this message id is the one that came back.
        for entry in self._pending.values():
            if entry.returned is None and entry.message_id == properties.message_id:
                entry.returned = PublishReturned(
                    method.exchange, method.routing_key, method.reply_text
                )
                return

    def _sweep(self) -> None:
        """Fail publishes whose confirm is overdue; re-arms itself while the channel lives."""
        channel = self._channel
        if channel is None or not channel.is_open:
            return
        deadline = time.monotonic() - self._timeout
        for tag in [t for t, e in self._pending.items() if e.sent_at < deadline]:
            entry = self._pending.pop(tag)
            _fail(entry.future, PublishTimeout(f"no confirm within {self._timeout:g}s"))
        connection = channel.connection
        connection.ioloop.call_later(1.0, self._sweep)

    def _fail_all(self, error: BrokerError) -> None:
        pending, self._pending = self._pending, {}
        for entry in pending.values():
            _fail(entry.future, error)
        self._drain(error)

    def _drain(self, error: BrokerError) -> None:
        with self._lock:
            batch = list(self._outgoing)
            self._outgoing.clear()
        for item in batch:
            _fail(item.future, error)


def _fail(future: Future[None], error: BaseException) -> None:
    if not future.done():
        future.set_exception(error)

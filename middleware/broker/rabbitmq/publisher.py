"""Pipelined publishing with publisher confirms: many messages in flight, one Future each.

``publish`` may be called from any thread and never waits for the broker: the message is handed
to the connection's thread, sent persistent and mandatory, and its Future resolves when the
broker confirms it, or fails with PublishNacked, PublishReturned (unroutable), PublishTimeout,
BrokerUnavailable (no connection, or the channel closed before the confirm), or
FieldTooLong (pika refused a value longer than an AMQP short string).

A message pika refuses to send costs only itself: the confirm sequence advances only for
messages that went out, so the broker's confirm tags keep matching the pending Futures. After a
nack the channel is renewed, at most once a second (``_renew_soon`` says why).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass
from typing import Any

import pika
import pika.exceptions
from pika.channel import Channel
from pika.spec import Basic
from prometheus_client import Counter

from middleware import metrics
from middleware.broker.guard import guarded, report
from middleware.broker.properties import PERSISTENT, Properties
from middleware.broker.rabbitmq.connection import BrokerLoop, ManagedConnection
from middleware.broker.rabbitmq.convert import to_pika
from middleware.broker.rabbitmq.loopfuture import LoopFuture
from middleware.broker.shortstr import long_property
from middleware.config.models import BrokerConfig
from middleware.errors import (
    BrokerError,
    BrokerUnavailable,
    PublishNacked,
    PublishReturned,
    PublishTimeout,
    SilobridgeError,
)

__all__ = ["Publisher"]

RENEW_AFTER = 1.0
"""Seconds a channel lives at least before a nack renews it (``Publisher._renew_soon``)."""


@dataclass(slots=True)
class _Pending:
    future: Future[Any]
    message_id: str | None
    purpose: str
    sent_at: float
    result: Any = None
    returned: BrokerError | None = None


@dataclass
class _Outgoing:
    exchange: str
    routing_key: str
    body: bytes
    properties: Properties
    future: Future[Any]
    purpose: str
    mandatory: bool = True
    result: Any = None


class Publisher:
    """Owns the publishing connection; thread-safe ``publish`` returning a confirm Future."""

    def __init__(
        self,
        broker: BrokerConfig,
        prepare: Callable[[], None] | None = None,
        name: str = "publish",
        loop: BrokerLoop | None = None,
    ) -> None:
        self._timeout = broker.publish_timeout
        self._outgoing: deque[_Outgoing] = deque()
        self._pending: dict[int, _Pending] = {}
        self._seq = 0
        self._channel: Channel | None = None
        self._channel_since = 0.0  # time.monotonic() when the channel opened
        self._renewing = False  # a renewal of the channel is scheduled
        self.renewals = 0  # channels renewed after a nack, for tests and diagnostics
        self._flush_scheduled = False
        self._lock = threading.Lock()
        self._published: dict[str, Counter] = {}  # per purpose: no labels() per confirm frame
        self._loop = loop or BrokerLoop()
        self._connection = ManagedConnection(self._loop, name, broker, self._on_channel,
                                             self._on_lost, prepare)

    @property
    def connected(self) -> bool:
        """The channel is open and the I/O loop turns (read from liveness, for readiness)."""
        channel = self._channel
        return self._connection.usable and channel is not None and channel.is_open

    @property
    def loop(self) -> BrokerLoop:
        return self._loop

    @property
    def fatal(self) -> Exception | None:
        return self._connection.fatal

    def start(self, wait: float | None = None) -> bool:
        """Start connecting; with ``wait``, block until connected (True) or not."""
        self._connection.start()
        return self._connection.ready.wait(wait) if wait else False

    def stop(self) -> None:
        self._connection.stop()
        self._fail_all(BrokerUnavailable("publisher stopped"))

    def publish(
        self,
        exchange: str,
        routing_key: str,
        body: bytes,
        properties: Properties,
        *,
        purpose: str = "deliver",
        mandatory: bool = True,
        result: Any = None,
    ) -> Future[Any]:
        """Send one persistent message; the Future resolves (to ``result``) on the confirm.

        Called on the loop thread (a worker), the Future is a ``LoopFuture``: callbacks only,
        no waiting on it."""
        future: Future[Any]
        if not self._connection.ready.is_set():
            future = Future()
            future.set_exception(BrokerUnavailable("not connected to the broker"))
            return future
        properties.delivery_mode = PERSISTENT
        if self._loop.in_loop():  # a worker on the loop thread: no hand-over needed
            future = LoopFuture()
            self._send(exchange, routing_key, body, properties, mandatory,
                       _Pending(future, properties.message_id, purpose, time.monotonic(), result))
            return future
        future = Future()
        item = _Outgoing(exchange, routing_key, body, properties, future, purpose, mandatory,
                         result)
        with self._lock:
            self._outgoing.append(item)
            schedule = not self._flush_scheduled
            self._flush_scheduled = True
        if schedule and not self._loop.call_soon(self._flush):
            with self._lock:
                self._flush_scheduled = False
            self._drain(BrokerUnavailable("not connected to the broker"))
        return future

    # -- the connection's thread ------------------------------------------------------------

    def _on_channel(self, channel: Channel) -> None:
        self._seq = 0
        self._pending.clear()
        channel.confirm_delivery(ack_nack_callback=guarded("confirm", self._on_confirm))
        channel.add_on_return_callback(guarded("return", self._on_return))
        self._channel = channel
        self._channel_since = time.monotonic()
        self._renewing = False
        self._loop.call_later(1.0, lambda: self._sweep(channel))
        self._flush()

    def _on_lost(self) -> None:
        self._channel = None
        self._fail_all(BrokerUnavailable(
            "the channel closed before the confirm (connection lost, or renewed after a nack)"))

    def _flush(self) -> None:
        with self._lock:
            self._flush_scheduled = False
            batch = list(self._outgoing)
            self._outgoing.clear()
        now = time.monotonic()
        for item in batch:
            self._send(item.exchange, item.routing_key, item.body, item.properties,
                       item.mandatory, _Pending(item.future, item.properties.message_id,
                                                item.purpose, now, item.result))

    def _send(
        self, exchange: str, routing_key: str, body: bytes, properties: Properties,
        mandatory: bool, pending: _Pending,
    ) -> None:
        channel = self._channel
        if channel is None or not channel.is_open:
            _fail(pending.future, BrokerUnavailable("not connected to the broker"))
            return
        try:
            channel.basic_publish(exchange, routing_key, body, to_pika(properties),
                                  mandatory=mandatory)
        except Exception as exc:  # pika encodes before it writes: nothing of it went out
            _fail(pending.future, self._refused(exc, exchange, routing_key, properties))
            return
        # Numbered only once sent: the broker numbers its confirms by what it received.
        self._seq += 1
        self._pending[self._seq] = pending

    @staticmethod
    def _refused(
        exc: Exception, exchange: str, routing_key: str, properties: Properties
    ) -> SilobridgeError:
        """The error for a message pika would not send, reported and counted on the way."""
        if isinstance(exc, pika.exceptions.ShortStringTooLong):
            too_long = long_property(exchange, routing_key, properties)
            if too_long is not None:  # bad input that slipped past the envelope checks
                report("publish", too_long, trace=False)
                return too_long
        report("publish", exc)
        if isinstance(exc, pika.exceptions.ChannelWrongStateError
                      | pika.exceptions.ConnectionWrongStateError):
            return BrokerUnavailable(f"the channel cannot publish now ({type(exc).__name__})")
        # the type only: the sender may see this, and pika's messages can quote values
        return BrokerError(f"the broker client could not send the message "
                           f"({type(exc).__name__}; see the log)")

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
        published: dict[str, int] = {}  # per purpose: one counter update per confirm frame
        try:
            for t in tags:
                entry = self._pending.pop(t, None)
                if entry is None:
                    continue
                if entry.returned is not None:
                    _fail(entry.future, entry.returned)
                elif acked:
                    published[entry.purpose] = published.get(entry.purpose, 0) + 1
                    # one lock, not two with done() first; try is cheaper than suppress()
                    try:  # noqa: SIM105
                        entry.future.set_result(entry.result)
                    except InvalidStateError:  # its caller cancelled it: nothing to tell
                        pass
                else:
                    _fail(entry.future, PublishNacked("the broker refused the message (nack)"))
        finally:  # what was resolved is counted, even if this loop broke off midway
            for purpose, count in published.items():
                counter = self._published.get(purpose)
                if counter is None:
                    counter = self._published[purpose] = metrics.PUBLISHED.labels(purpose)
                counter.inc(count)
        if not acked:
            self._renew_soon()

    def _renew_soon(self) -> None:
        """After a nack, renew the channel once it is ``RENEW_AFTER`` old (one at a time).

        A nack may be the channel's own fault, for as long as it lives: in RabbitMQ 3.10 a
        channel whose first publish to a quorum queue came while the queue's record still named
        a leader on a node that had just died asks that dead node again for every later publish
        to that queue, and each is nacked until the node is back, though a new leader was
        elected meanwhile (``rabbit_fifo_client:enqueue`` leaves its state as it was after
        ``{badrpc, nodedown}``, and the channel never re-reads the record). Seen in the
        three-node test: the target queue nacked for over 30 s after its leader's node was
        SIGKILLed. A fresh channel reads the record again. For a nack of a full queue
        (overflow reject-publish) a new channel changes nothing; it costs the confirms then in
        flight (they fail as on a lost connection, and are retried), at most once a second.
        """
        channel = self._channel
        if channel is None or self._renewing:
            return
        self._renewing = True
        wait = max(0.0, self._channel_since + RENEW_AFTER - time.monotonic())
        self._loop.call_later(wait, lambda: self._renew(channel))

    def _renew(self, channel: Channel) -> None:
        if channel.is_open and channel is self._channel:
            self.renewals += 1
            self._connection.renew_channel()

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

    def _sweep(self, channel: Channel) -> None:
        """Fail publishes whose confirm is overdue; re-arms itself while its channel lives."""
        if not channel.is_open or channel is not self._channel:
            return
        deadline = time.monotonic() - self._timeout
        for tag in [t for t, e in self._pending.items() if e.sent_at < deadline]:
            entry = self._pending.pop(tag)
            _fail(entry.future, PublishTimeout(f"no confirm within {self._timeout:g}s"))
        self._loop.call_later(1.0, lambda: self._sweep(channel))

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


def _fail(future: Future[Any], error: BaseException) -> None:
    if not future.done():
        future.set_exception(error)


"""Consuming with manual acks and bounded prefetch on its own connection.

Handlers run on the connection's thread and must not block; they finish a message later, from
any thread, through ``Delivery.ack`` / ``Delivery.nack``. Acks are queued and sent in batches on
the connection's thread. An ack may carry a record (the route and envelope id just delivered):
the records of a batch are handed to ``before_ack``, which commits them off this thread (store
I/O never runs on the I/O loop) and returns a Future; the acks of those messages are sent only
once it completed, back on the loop, so a message is never acked before its idempotency record
is durable. Until then their tags stay unsettled, so no ``multiple`` ack covers them. Acks
without a record (filtered, duplicates, parked copies) go out at once. Acks that can be combined
go out as one ``multiple`` ack. A delivery from a channel that has since closed cannot be acked
any more (the broker already requeued it), so such acks are dropped, and idempotency records
make the redelivery harmless.

Nothing raises out of these callbacks onto the shared I/O loop: a handler that raises gets its
message nacked (the queue's delivery limit dead-letters it if that repeats), and a batch whose
records could not be committed (the commit's Future failed) is nacked instead of acked, so it
comes back and nothing is lost.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

import pika
import structlog
from pika.channel import Channel
from pika.spec import Basic

from middleware.broker.contract import Handler, Record
from middleware.broker.guard import guarded, report
from middleware.broker.pending import PendingCommits
from middleware.broker.properties import Properties
from middleware.broker.rabbitmq.connection import BrokerLoop, ManagedConnection
from middleware.broker.rabbitmq.convert import from_pika
from middleware.config.models import BrokerConfig

__all__ = ["Consumer", "Delivery", "Handler", "Record"]

log = structlog.get_logger(__name__)


class Delivery:
    """One message taken from a queue; finish it exactly once with ack() or nack()."""

    __slots__ = ("_consumer", "_generation", "body", "properties", "received",
                 "redelivered", "settled", "tag")

    def __init__(
        self,
        consumer: Consumer,
        generation: int,
        method: Basic.Deliver,
        properties: pika.BasicProperties,
        body: bytes,
    ) -> None:
        self._consumer = consumer
        self._generation = generation
        self.tag: int = method.delivery_tag
        self.redelivered: bool = method.redelivered
        self.properties: Properties = from_pika(properties)
        self.body = body
        self.received = time.monotonic()
        self.settled = False

    @property
    def headers(self) -> dict[str, Any]:
        return self.properties.headers

    def ack(self, record: Record | None = None) -> None:
        """Settle the message; ``record`` is committed (batched) before the ack is sent."""
        self.settled = True
        self._consumer.settle(self._generation, self.tag, True, record)

    def nack(self) -> None:
        """Return the message to its queue (the broker counts it against the delivery limit)."""
        self.settled = True
        self._consumer.settle(self._generation, self.tag, False, None)


Settle = tuple[int, int, bool, Record | None]  # (channel generation, tag, ack, record)


class Consumer:
    """Consumes a set of queues, each with its own handler, on one connection and channel."""

    def __init__(
        self,
        broker: BrokerConfig,
        handlers: dict[str, Handler],
        *,
        prefetch: int,
        prepare: Callable[[], None] | None = None,
        before_ack: Callable[[list[Record]], Future[None]] | None = None,
        name: str = "consume",
        loop: BrokerLoop | None = None,
    ) -> None:
        self._handlers = handlers
        self._prefetch = prefetch
        self._before_ack = before_ack
        self._channel: Channel | None = None
        self._generation = 0
        # delivery tags not yet settled, in delivery order: the first key is the oldest
        self._unsettled: dict[int, None] = {}
        self._settles: deque[Settle] = deque()
        self._flush_scheduled = False
        self._commits = PendingCommits()  # batches whose records are being committed
        self._lock = threading.Lock()
        self._consuming = threading.Event()
        self._paused = False
        self._loop = loop or BrokerLoop()
        self._connection = ManagedConnection(self._loop, name, broker, self._on_channel,
                                             self._on_lost, prepare)

    @property
    def consuming(self) -> bool:
        return self._consuming.is_set()

    def start(self, wait: float | None = None) -> bool:
        self._connection.start()
        return self._consuming.wait(wait) if wait else False

    def pause(self, timeout: float = 10.0) -> bool:
        """Stop taking new messages (graceful shutdown); in-flight ones can still be settled.

        Returns once the broker confirmed every cancel (no delivery can follow it), so what is
        in flight afterwards is all there is to finish; False if that took over ``timeout``.
        """
        self._paused = True
        cancelled = threading.Event()
        if not self._loop.call_soon(lambda: self._cancel(cancelled)):
            return True  # no connection: nothing can be delivered any more
        return cancelled.wait(timeout)

    def stop(self, commit_wait: float = 10.0) -> None:
        """Send what is settled, then close; unsettled messages go back to their queues.

        Acks still queued go out before the close, and so do those whose idempotency records
        are being committed (at most ``commit_wait`` seconds): closing first dropped them, so a
        drained daemon left delivered messages to be delivered again after its restart.
        """
        flushed = threading.Event()

        def flush() -> None:
            self._flush()
            self._commits.when_idle(flushed.set)

        if self._loop.call_soon(flush) and not self._loop.in_loop():
            flushed.wait(commit_wait)
        self._connection.stop()

    def settle(self, generation: int, tag: int, ack: bool, record: Record | None) -> None:
        """Queue an ack/nack from any thread; sent in a batch on the connection's thread."""
        with self._lock:
            self._settles.append((generation, tag, ack, record))
            schedule = not self._flush_scheduled
            self._flush_scheduled = True
        if schedule and not self._loop.call_soon(self._flush):
            with self._lock:
                self._flush_scheduled = False
                self._settles.clear()  # the channel is gone; the broker requeues them itself

    # -- the connection's thread ------------------------------------------------------------

    def _on_channel(self, channel: Channel) -> None:
        self._generation += 1
        self._channel = channel
        self._unsettled.clear()
        if self._paused:
            return
        channel.basic_qos(prefetch_count=self._prefetch)
        channel.add_on_cancel_callback(guarded("channel", self._cancelled_by_broker))
        for queue, handler in self._handlers.items():
            channel.basic_consume(queue, guarded("deliver", self._dispatcher(queue, handler)),
                                  consumer_tag=queue)
        self._consuming.set()

    def _dispatcher(self, queue: str, handler: Handler) -> Callable[..., None]:
        def on_message(
            _channel: Channel, method: Basic.Deliver, properties: pika.BasicProperties,
            body: bytes,
        ) -> None:
            self._unsettled[method.delivery_tag] = None
            delivery = Delivery(self, self._generation, method, properties, body)
            try:
                handler(delivery)
            except Exception as exc:  # costs this message (back to its queue), not the loop
                report("deliver", exc, queue=queue)
                if not delivery.settled:
                    delivery.nack()

        return on_message

    def _cancelled_by_broker(self, frame: Any) -> None:
        """The broker cancelled a consumer: its queue was deleted (by an operator, say).

        Left alone, the channel would stay open and consume nothing from that queue while
        readiness said "consuming". Closing the channel makes the connection reconnect, and
        every reconnect re-declares the topology first, so the queue exists again and every
        consumer resumes. Deliveries in flight finish: their acks are dropped with the old
        channel, and what they carried was delivered already.
        """
        log.warning("the broker cancelled a consumer; reconnecting to declare and consume again",
                    queue=frame.method.consumer_tag)
        self._consuming.clear()
        channel = self._channel
        if channel is not None and channel.is_open:
            channel.close()

    def _on_lost(self) -> None:
        self._channel = None
        self._consuming.clear()

    def _cancel(self, cancelled: threading.Event) -> None:
        """Cancel the queues' consumers one after another, each on the previous one's CancelOk.

        Not all at once: pika files every pending ``basic_cancel`` callback under the same
        frame type, so the first CancelOk ran all of them (with its own consumer tag) and the
        later ones found none; with two or more queues ``pause`` then waited its whole timeout
        (10 s on every daemon stop). A consumer the broker already cancelled (its queue was
        deleted) is skipped: no CancelOk would come for it.
        """
        self._consuming.clear()
        channel = self._channel
        if channel is None or not channel.is_open:
            cancelled.set()
            return
        remaining = list(self._handlers)

        def next_one(_frame: Any = None) -> None:
            try:
                while remaining:
                    tag = remaining.pop()
                    if tag in channel.consumer_tags:
                        channel.basic_cancel(tag, callback=guarded("channel", next_one))
                        return
            except Exception as exc:  # the channel is going away: it delivers nothing either
                report("channel", exc)
            cancelled.set()

        next_one()

    def _flush(self) -> None:
        with self._lock:
            self._flush_scheduled = False
            batch = list(self._settles)
            self._settles.clear()
        channel = self._channel
        if channel is None or not channel.is_open:
            return
        current = [item for item in batch if item[0] == self._generation]
        held = [item for item in current if item[3] is not None and item[2]]
        if held and self._before_ack is not None:
            generation = self._generation
            try:  # durable before any ack of these goes out; the commit runs off the loop
                committing = self._before_ack([item[3] for item in held if item[3]])
            except Exception as exc:  # not even handed over: not acked, they come back
                report("settle", exc, messages=len(held))
                committing = Future()
                committing.set_exception(exc)
            committing.add_done_callback(lambda done: self._loop.call_soon(
                lambda: self._committed(generation, held, done)))
            self._commits.started()  # after: _committed runs in a later turn of this loop
            current = [item for item in current if not (item[3] is not None and item[2])]
        self._send(current)

    def _committed(self, generation: int, held: list[Settle], done: Future[None]) -> None:
        """On the loop: the records of ``held`` are durable (ack) or not (nack, they return)."""
        try:
            if generation != self._generation:
                return  # that channel closed: the broker requeued them, harmless with records
            error = done.exception()
            if error is not None:
                report("settle", error, trace=False, messages=len(held))
                held = [(g, tag, False, record) for g, tag, _ack, record in held]
            self._send(held)
        finally:
            self._commits.finished()

    def _send(self, items: list[Settle]) -> None:
        channel = self._channel
        if channel is None or not channel.is_open or not items:
            return
        acks = []
        try:
            for _generation, tag, ack, _record in items:
                self._unsettled.pop(tag, None)
                if ack:
                    acks.append(tag)
                else:
                    channel.basic_nack(tag, requeue=True)
            self._send_acks(channel, sorted(acks))
        except Exception as exc:  # the channel broke: the broker requeues what it holds
            report("settle", exc)

    def _send_acks(self, channel: Channel, tags: list[int]) -> None:
        """One ``multiple`` ack for every tag below the oldest still unsettled delivery."""
        floor = next(iter(self._unsettled), None)
        covered = [t for t in tags if floor is None or t < floor]
        if covered:
            channel.basic_ack(covered[-1], multiple=True)
        for tag in tags[len(covered):]:
            channel.basic_ack(tag)

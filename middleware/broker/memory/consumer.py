"""Consuming from the in-memory broker: prefetch, manual acks, requeue, batched settlements.

Like the RabbitMQ consumer, settlements may come from any thread; they are applied on the
loop in batches, the batch's records committed through ``before_ack`` before any of its acks
(a failed commit turns those acks into requeues). Stopping returns what is unsettled to its
queue as redelivered, as a closed channel does on RabbitMQ.
"""

from __future__ import annotations

import copy
import itertools
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

from middleware.broker.contract import Handler, Record
from middleware.broker.guard import report
from middleware.broker.memory.state import Message, Queue
from middleware.broker.pending import PendingCommits
from middleware.broker.properties import Properties

if TYPE_CHECKING:  # the broker creates its consumers; only the type is needed here
    from middleware.broker.memory.broker import MemoryBroker

__all__ = ["MemoryConsumer", "MemoryDelivery"]


class MemoryDelivery:
    """One message taken from a queue; finish it exactly once with ack() or nack()."""

    def __init__(self, consumer: MemoryConsumer, generation: int, tag: int,
                 message: Message) -> None:
        self._consumer = consumer
        self._generation = generation
        self.tag = tag
        self.body: bytes = message.body
        self.properties: Properties = copy.deepcopy(message.properties)  # as on the wire
        self.redelivered: bool = message.redelivered
        self.received = time.monotonic()
        self.settled = False

    @property
    def headers(self) -> dict[str, Any]:
        return self.properties.headers

    def ack(self, record: Record | None = None) -> None:
        self.settled = True
        self._consumer.settle(self._generation, self.tag, True, record)

    def nack(self) -> None:
        self.settled = True
        self._consumer.settle(self._generation, self.tag, False, None)


class MemoryConsumer:
    def __init__(self, broker: MemoryBroker, handlers: dict[str, Handler], prefetch: int,
                 before_ack: Callable[[list[Record]], Future[None]] | None) -> None:
        self._broker = broker
        self._handlers = handlers
        self._prefetch = prefetch
        self._before_ack = before_ack
        self._generation = 0
        self._tags = itertools.count(1)
        self._unsettled: dict[int, tuple[Queue, Message]] = {}
        self._per_queue: dict[str, int] = {}
        self._settles: list[tuple[int, int, bool, Record | None]] = []
        self._commits = PendingCommits()  # batches whose records are being committed
        self._lock = threading.Lock()
        self._consuming = threading.Event()

    @property
    def consuming(self) -> bool:
        return self._consuming.is_set()

    def start(self, wait: float | None = None) -> bool:
        self._broker.prepare()

        def subscribe() -> None:
            self._generation += 1
            for queue in self._handlers:
                self._broker.subscribe(queue, self)
            self._consuming.set()

        self._broker.loop.run(subscribe)
        return True

    def pause(self, timeout: float = 10.0) -> bool:
        self._broker.loop.run(self._unsubscribe, timeout)
        return True

    def stop(self, commit_wait: float = 10.0) -> None:
        """As RabbitMQ's consumer: acks waiting for their records' commit go out first."""
        flushed = threading.Event()

        def flush() -> None:
            self._flush()
            self._commits.when_idle(flushed.set)

        self._broker.loop.run(flush)
        if not self._broker.loop.in_loop():
            flushed.wait(commit_wait)

        def close() -> None:
            self._flush()
            self._unsubscribe()
            self._generation += 1  # later settlements belong to a closed channel: dropped
            unsettled, self._unsettled = self._unsettled, {}
            self._per_queue.clear()
            for queue, message in reversed(list(unsettled.values())):
                self._broker.state.give_back(queue, message)

        self._broker.loop.run(close)

    def settle(self, generation: int, tag: int, ack: bool, record: Record | None) -> None:
        with self._lock:
            self._settles.append((generation, tag, ack, record))
            first = len(self._settles) == 1
        if first:
            self._broker.loop.call_soon(self._flush)

    # -- the loop -----------------------------------------------------------------------------

    def room(self, queue: str) -> bool:
        return self._per_queue.get(queue, 0) < self._prefetch

    def deliver(self, queue: Queue, message: Message) -> None:
        tag = next(self._tags)
        self._unsettled[tag] = (queue, message)
        self._per_queue[queue.name] = self._per_queue.get(queue.name, 0) + 1
        delivery = MemoryDelivery(self, self._generation, tag, message)
        try:
            self._handlers[queue.name](delivery)
        except Exception as exc:  # costs this message (back to its queue), not the loop
            report("deliver", exc, queue=queue.name)
            if not delivery.settled:
                delivery.nack()

    def _unsubscribe(self) -> None:
        self._consuming.clear()
        for queue in self._handlers:
            self._broker.unsubscribe(queue, self)

    def _flush(self) -> None:
        with self._lock:
            batch, self._settles = self._settles, []
        current = [item for item in batch if item[0] == self._generation]
        records = [item[3] for item in current if item[3] is not None]
        if not records or self._before_ack is None:
            self._apply(current)
            return
        # As RabbitMQ's consumer: acks carrying records wait for their commit (made off this
        # loop); the others go out at once, and a failed commit turns the held acks into nacks.
        held = [item for item in current if item[3] is not None]
        self._apply([item for item in current if item[3] is None])
        try:
            done = self._before_ack(records)
        except Exception as exc:
            report("settle", exc, messages=len(records))
            self._apply([(g, tag, False, record) for g, tag, _ack, record in held])
            return
        done.add_done_callback(lambda finished: self._broker.loop.call_soon(
            lambda: self._committed(held, finished)))
        self._commits.started()  # after: _committed runs in a later turn of this loop

    def _committed(self, held: list[tuple[int, int, bool, Record | None]],
                   done: Future[None]) -> None:
        try:
            error = done.exception()
            if error is not None:  # not durable, so not acked: they come back and retry
                report("settle", error, messages=len(held))
                held = [(g, tag, False, record) for g, tag, _ack, record in held]
            self._apply([item for item in held if item[0] == self._generation])
        finally:
            self._commits.finished()

    def _apply(self, current: list[tuple[int, int, bool, Record | None]]) -> None:
        ready: set[str] = set()
        for _generation, tag, ack, _record in current:
            held = self._unsettled.pop(tag, None)
            if held is None:
                continue
            queue, message = held
            self._per_queue[queue.name] -= 1
            if not ack:
                self._broker.state.give_back(queue, message)
            ready.add(queue.name)
        for name in ready:
            self._broker.dispatch(name)

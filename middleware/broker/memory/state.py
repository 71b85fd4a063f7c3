"""The in-memory broker's exchanges and queues: routing, TTL, dead-lettering, delivery counts.

Everything here runs on the memory broker's one loop thread (``loop.Loop``), as RabbitMQ's
own queue processes serialise what happens to a queue, so no lock guards it. The rules follow
RabbitMQ 3.10 where silobridge relies on them:

- topic routing with ``*`` (one word) and ``#`` (zero or more words); fanout; the default
  exchange ``""`` routes to the queue named by the routing key;
- ``alternate-exchange`` takes what an exchange cannot route; what is still unroutable is
  returned when published ``mandatory``;
- ``x-max-length`` with ``x-overflow`` ``reject-publish`` (the publish is nacked) or
  ``drop-head`` (the oldest message goes); a quorum queue takes one message over the limit;
- ``x-message-ttl`` expires messages at the head of a queue and dead-letters them;
- quorum queues count returns: a returned message carries ``x-delivery-count`` and is
  dead-lettered once it was returned more often than ``x-delivery-limit``;
- dead-lettering goes to ``x-dead-letter-exchange`` with ``x-dead-letter-routing-key`` (else the
  message's own key) and records ``x-death`` and ``x-first-death-*`` headers as RabbitMQ does.
"""

from __future__ import annotations

import copy
import re
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from middleware.broker.properties import Properties
from middleware.broker.topology import ExchangeSpec, QueueSpec
from middleware.errors import TopologyConflict

__all__ = ["Message", "Queue", "Routed", "State", "topic_matches"]


def topic_matches(pattern: str, key: str) -> bool:
    """AMQP topic matching: ``*`` is exactly one word, ``#`` zero or more."""
    regex = "^" + r"\.".join(
        r"[^.]+" if word == "*" else ".*" if word == "#" else re.escape(word)
        for word in pattern.split(".")
    ) + "$"
    regex = regex.replace(r"\..*", r"(\..*)?").replace(r".*\.", r"(.*\.)?")
    return re.match(regex, key) is not None


@dataclass
class Message:
    body: bytes
    properties: Properties
    exchange: str
    routing_key: str
    redelivered: bool = False
    returns: int = 0  # times it went back to its queue (quorum queues' delivery count)
    expires_at: float | None = None


@dataclass
class Queue:
    name: str
    arguments: dict[str, Any]
    messages: deque[Message] = field(default_factory=deque)

    @property
    def quorum(self) -> bool:
        return self.arguments.get("x-queue-type") == "quorum"


@dataclass
class _Exchange:
    name: str
    type: str
    arguments: dict[str, Any]
    bindings: list[tuple[str, str]] = field(default_factory=list)  # (queue, pattern)


@dataclass(frozen=True)
class Routed:
    """Where one publish went: ``unroutable`` (no queue), or refused by a full queue."""

    queues: tuple[str, ...]
    rejected: bool = False

    @property
    def unroutable(self) -> bool:
        return not self.queues


class State:
    """Exchanges, queues and bindings; ``on_ready`` is told when a queue got a message."""

    def __init__(self, on_ready: Callable[[str], None],
                 schedule: Callable[[float, Callable[[], None]], None]) -> None:
        self.queues: dict[str, Queue] = {}
        self._exchanges: dict[str, _Exchange] = {}
        self._on_ready = on_ready
        self._schedule = schedule

    # -- declaring ----------------------------------------------------------------------------

    def declare_exchange(self, spec: ExchangeSpec) -> None:
        existing = self._exchanges.get(spec.name)
        if existing is None:
            self._exchanges[spec.name] = _Exchange(spec.name, spec.type, dict(spec.arguments))
        elif (existing.type, existing.arguments) != (spec.type, spec.arguments):
            raise TopologyConflict(spec.name, f"PRECONDITION_FAILED - inequivalent arg for "
                                              f"exchange '{spec.name}'")

    def declare_queue(self, spec: QueueSpec) -> None:
        existing = self.queues.get(spec.name)
        if existing is None:
            self.queues[spec.name] = Queue(spec.name, dict(spec.arguments))
        elif existing.arguments != spec.arguments:
            changed = sorted(k for k in {*existing.arguments, *spec.arguments}
                             if existing.arguments.get(k) != spec.arguments.get(k))
            raise TopologyConflict(spec.name, f"PRECONDITION_FAILED - inequivalent arg "
                                              f"'{changed[0]}' for queue '{spec.name}'")
        for exchange, pattern in spec.bindings:
            target = self._exchanges.get(exchange)
            if target is None:
                raise TopologyConflict(spec.name, f"NOT_FOUND - no exchange '{exchange}'")
            if (spec.name, pattern) not in target.bindings:
                target.bindings.append((spec.name, pattern))

    def has_exchange(self, name: str) -> bool:
        return name == "" or name in self._exchanges

    # -- routing ------------------------------------------------------------------------------

    def route(self, exchange: str, message: Message) -> Routed:
        """Put ``message`` into every queue the exchange routes its key to."""
        names = self._destinations(exchange, message.routing_key, set())
        queues = [self.queues[name] for name in names]
        if any(_full(queue) and queue.arguments.get("x-overflow") == "reject-publish"
               for queue in queues):
            return Routed(tuple(names), rejected=True)
        for queue in queues:
            self._enqueue(queue, copy.deepcopy(message))
        return Routed(tuple(names))

    def _destinations(self, exchange: str, key: str, seen: set[str]) -> list[str]:
        if exchange == "":
            return [key] if key in self.queues else []
        spec = self._exchanges.get(exchange)
        if spec is None or exchange in seen:
            return []
        seen.add(exchange)
        names = [queue for queue, pattern in spec.bindings if _binds(spec.type, pattern, key)]
        names = list(dict.fromkeys(names))
        alternate = spec.arguments.get("alternate-exchange")
        if not names and alternate:
            return self._destinations(str(alternate), key, seen)
        return names

    def _enqueue(self, queue: Queue, message: Message) -> None:
        if _full(queue):  # drop-head (the default overflow): the oldest one goes
            self.dead_letter(queue, queue.messages.popleft(), "maxlen")
        ttl = queue.arguments.get("x-message-ttl")
        if ttl is not None:
            message.expires_at = time.monotonic() + int(ttl) / 1000
            self._schedule(int(ttl) / 1000, lambda: self.expire(queue))
        queue.messages.append(message)
        self._on_ready(queue.name)

    def expire(self, queue: Queue) -> None:
        """Dead-letter the expired messages at the head of the queue."""
        now = time.monotonic()
        while queue.messages and (queue.messages[0].expires_at or now + 1) <= now:
            self.dead_letter(queue, queue.messages.popleft(), "expired")

    def give_back(self, queue: Queue, message: Message) -> None:
        """A nacked or abandoned message returns to the head of its queue (or, past a quorum
        queue's delivery limit, is dead-lettered)."""
        message.redelivered = True
        if queue.quorum:
            message.returns += 1
            message.properties.headers["x-delivery-count"] = message.returns
            limit = queue.arguments.get("x-delivery-limit")
            if limit is not None and message.returns > int(limit):
                del message.properties.headers["x-delivery-count"]
                self.dead_letter(queue, message, "delivery_limit")
                return
        queue.messages.appendleft(message)
        self._on_ready(queue.name)

    def dead_letter(self, queue: Queue, message: Message, reason: str) -> None:
        exchange = queue.arguments.get("x-dead-letter-exchange")
        if exchange is None:
            return  # no DLX: the message is dropped, as RabbitMQ does
        headers = message.properties.headers
        _record_death(headers, queue.name, reason, message)
        key = queue.arguments.get("x-dead-letter-routing-key", message.routing_key)
        moved = Message(message.body, message.properties, str(exchange), str(key))
        self.route(str(exchange), moved)


def _binds(kind: str, pattern: str, key: str) -> bool:
    if kind == "fanout":
        return True
    if kind == "direct":
        return pattern == key
    return topic_matches(pattern, key)


def _full(queue: Queue) -> bool:
    """A classic queue is full at its limit; a quorum queue (3.10) refuses only once it holds
    more than the limit, so it takes one message over it (the contract suite shows both)."""
    limit = queue.arguments.get("x-max-length")
    if limit is None:
        return False
    return len(queue.messages) > int(limit) if queue.quorum else len(queue.messages) >= int(limit)


def _record_death(headers: dict[str, Any], queue: str, reason: str, message: Message) -> None:
    deaths: list[dict[str, Any]] = list(headers.get("x-death") or [])
    for entry in deaths:
        if entry.get("queue") == queue and entry.get("reason") == reason:
            entry["count"] = int(entry.get("count", 0)) + 1
            deaths.remove(entry)
            deaths.insert(0, entry)
            break
    else:
        deaths.insert(0, {"count": 1, "reason": reason, "queue": queue,
                          "time": datetime.now(UTC).replace(microsecond=0),
                          "exchange": message.exchange,
                          "routing-keys": [message.routing_key]})
    headers["x-death"] = deaths
    headers.setdefault("x-first-death-exchange", message.exchange)
    headers.setdefault("x-first-death-queue", queue)
    headers.setdefault("x-first-death-reason", reason)

"""Shared parts of the two-way sync end-to-end tests: a recording peer, event publishing,
queue cleanup."""

from __future__ import annotations

import json
import queue
import random
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pika
from starlette.requests import Request
from starlette.responses import Response

from middleware.broker.topology import EVENTS_EXCHANGE, dlq_name, hold_name, queue_name, retry_name
from middleware.envelope import Envelope
from middleware.scrape import parse
from tests.integration.rest_helpers import json_response

__all__ = ["T0", "EmittingPeer", "OrderedTarget", "cleanup_routes", "outcomes", "publish",
           "update"]

T0 = datetime(2026, 6, 1, tzinfo=UTC)


class OrderedTarget:
    """A REST peer holding one record per subject, which checks order itself.

    Every accepted PUT carries the update's sequence number ``seq``; one lower than the last
    accepted for its subject is an order violation (a repeat of the same one is a redelivery,
    not a violation). A call fails with 503 at random (``failure_rate``), at most
    ``max_failures`` times per update, so no update exhausts the route's retries.
    """

    def __init__(self, failure_rate: float, max_failures: int, seed: int = 16) -> None:
        self.lock = threading.Lock()
        self.random = random.Random(seed)
        self.failure_rate = failure_rate
        self.max_failures = max_failures
        self.failures: Counter[tuple[str, int]] = Counter()
        self.last: dict[str, int] = {}
        self.accepted: list[tuple[str, int]] = []
        self.violations: list[tuple[str, int, int]] = []

    async def __call__(self, request: Request, body: bytes) -> Response:
        record = json.loads(body)
        subject, seq = str(record["no"]), int(record["seq"])
        with self.lock:
            if (self.failures[(subject, seq)] < self.max_failures
                    and self.random.random() < self.failure_rate):
                self.failures[(subject, seq)] += 1
                return json_response({"error": "busy"}, 503)
            if seq < self.last.get(subject, -1):
                self.violations.append((subject, self.last[subject], seq))
            self.last[subject] = max(seq, self.last.get(subject, -1))
            self.accepted.append((subject, seq))
        return json_response({"ok": True}, 200)


def outcomes(ops_ports: list[int], route: str, outcome: str) -> float:
    """A route's messages with this outcome, summed over the replicas' own metrics."""
    return sum(parse(httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text).sum(
        "silobridge_messages_total", route=route, outcome=outcome) for port in ops_ports)


def publish(amqp_url: str, routing_key: str, envelopes: list[Envelope]) -> None:
    """Persistent, confirmed publishes to the events exchange, as an ingress does."""
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        for envelope in envelopes:
            channel.basic_publish(EVENTS_EXCHANGE, routing_key, envelope.to_json(),
                                  pika.BasicProperties(delivery_mode=2, message_id=envelope.id,
                                                       content_type="application/json"))
    finally:
        connection.close()


def update(system: str, subject: str, seq: int, **data: Any) -> Envelope:
    """Update ``seq`` of a subject, stamped ``seq`` milliseconds after T0."""
    return Envelope.new(source=f"{system}/e2e", type=f"{system}.customer.updated",
                        subject=subject, time=T0 + timedelta(milliseconds=seq),
                        data={"no": subject, "seq": seq, **data})


@contextmanager
def cleanup_routes(amqp_url: str, routes: list[str], tiers: int) -> Iterator[None]:
    """Delete each route's queues (hold queue included) after the test."""
    try:
        yield
    finally:
        connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
        channel = connection.channel()
        for route in routes:
            for name in (queue_name(route), dlq_name(route), hold_name(route),
                         *(retry_name(route, n) for n in range(1, tiers + 1))):
                channel.queue_delete(name)
        connection.close()


class EmittingPeer:
    """A system that reports every write it receives as a change event, as CRMs and ERPs do:
    a PUT merges the fields it carries into the record (plus the peer's own revision field) and
    emits ``<system>.<entity>.updated`` with the stored record; ``edit`` is a user's change made
    in the system itself, emitted the same way. Events leave on a thread of their own."""

    def __init__(self, amqp_url: str, system: str,
                 entity: Callable[[str], str] = lambda _subject: "customer") -> None:
        self.system = system
        self.entity = entity
        self.lock = threading.Lock()
        self.records: dict[str, dict[str, Any]] = {}
        self.writes: list[dict[str, Any]] = []
        self._amqp_url = amqp_url
        self._out: queue.SimpleQueue[Envelope | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._emit, name=f"emit-{system}", daemon=True)
        self._thread.start()

    async def __call__(self, request: Request, body: bytes) -> Response:
        record = json.loads(body)
        with self.lock:
            self.writes.append(record)
            self._store({**self.records.get(str(record["no"]), {}), **record})
        return json_response({"ok": True}, 200)

    def edit(self, subject: str, **changes: Any) -> None:
        with self.lock:
            self._store({**self.records.get(subject, {"no": subject}), **changes})

    def _store(self, record: dict[str, Any]) -> None:
        subject = str(record["no"])
        rev = int(self.records.get(subject, {}).get("rev", 0)) + 1
        stored = {**record, "rev": rev}
        self.records[subject] = stored
        self._out.put(Envelope.new(source=f"{self.system}/e2e",
                                   type=f"{self.system}.{self.entity(subject)}.updated",
                                   subject=subject,
                                   data=stored))

    def _emit(self) -> None:
        connection = pika.BlockingConnection(pika.URLParameters(self._amqp_url))
        channel = connection.channel()
        channel.confirm_delivery()
        while (envelope := self._out.get()) is not None:
            channel.basic_publish(EVENTS_EXCHANGE, envelope.type, envelope.to_json(),
                                  pika.BasicProperties(delivery_mode=2, message_id=envelope.id))
        connection.close()

    def seed(self, subject: str, **fields: Any) -> None:
        """A record that exists already, without a change event."""
        with self.lock:
            self.records[subject] = {"no": subject, **fields, "rev": 0}

    def view(self, subject: str, *fields: str) -> tuple[Any, ...]:
        with self.lock:
            record = self.records.get(subject, {})
            return tuple(record.get(f) for f in fields)

    def close(self) -> None:
        self._out.put(None)
        self._thread.join(10)

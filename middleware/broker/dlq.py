"""Dead letters as a product: list, show, replay and purge a route's DLQ, and peek any queue;
and a route's queue counts with the age of its oldest dead letter (``status``, the monitor).

All operations use their own short blocking connection and work while the daemon runs. Browsing
takes messages with basic.get and lets the channel close without acking, so the broker puts them
back: nothing is removed unless an operation says so (replay acks what it republished, after the
broker confirmed the republish).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
import pika

from middleware import headers as h
from middleware.broker.factory import BlockingChannel, blocking_channel, queue_depth, to_pika
from middleware.broker.properties import with_headers
from middleware.broker.topology import dlq_name, queue_name, retry_name
from middleware.config.models import BrokerConfig, Config, RouteConfig

__all__ = ["DeadLetter", "Queues", "browse", "purge", "replay", "route_counts"]


@dataclass
class DeadLetter:
    """One message in a queue, with what an operator needs to decide about it."""

    message_id: str | None
    type: str | None
    subject: str | None
    reason: str
    attempts: int
    failed_at: datetime | None
    headers: dict[str, Any] = field(repr=False)
    body: bytes = field(repr=False)

    def age_seconds(self, now: datetime | None = None) -> float | None:
        if self.failed_at is None:
            return None
        return ((now or datetime.now(UTC)) - self.failed_at).total_seconds()


def _parse(props: pika.BasicProperties, body: bytes) -> DeadLetter:
    headers = dict(props.headers or {})
    subject = None
    try:
        event = orjson.loads(body)
        subject = event.get("subject") if isinstance(event, dict) else None
    except orjson.JSONDecodeError:
        pass
    reason = str(headers.get(h.REASON) or headers.get("x-first-death-reason") or "unknown")
    failed = headers.get(h.LAST_FAILURE)
    failed_at = datetime.fromisoformat(str(failed)) if failed else None
    if failed_at is None and props.timestamp:
        failed_at = datetime.fromtimestamp(props.timestamp, UTC)
    return DeadLetter(props.message_id, props.type, subject, reason,
                      int(headers.get(h.ATTEMPTS, 0) or 0), failed_at, headers, body)


def _take(channel: BlockingChannel, queue: str, limit: int) -> Iterator[tuple[int, DeadLetter,
                                                                             pika.BasicProperties]]:
    for _ in range(limit):
        method, props, body = channel.basic_get(queue, auto_ack=False)
        if method is None:
            return
        yield method.delivery_tag, _parse(props, body), props


@dataclass(frozen=True)
class Queues:
    """A route's queues as the broker sees them; None where a queue does not exist."""

    ready: int | None
    retry: int | None
    dlq: int | None
    dlq_age: float | None
    """Seconds since the DLQ head last failed (None: no dead letter, or no time on it)."""


def route_counts(channel: BlockingChannel, config: Config, route: RouteConfig) -> Queues:
    """Depths of the route queue, its retry tiers together and its DLQ; the DLQ head is taken
    on ``channel`` and goes back when the caller closes it."""
    name = route.name
    tiers = range(1, len(config.retry_for(route).delays()) + 1)
    retries = [queue_depth(channel, retry_name(name, n)) for n in tiers]
    dlq = queue_depth(channel, dlq_name(name))
    head = next(_take(channel, dlq_name(name), 1), None) if dlq else None
    return Queues(queue_depth(channel, queue_name(name)),
                  None if None in retries else sum(r or 0 for r in retries),
                  dlq, head[1].age_seconds() if head else None)


def browse(broker: BrokerConfig, queue: str, limit: int = 1000) -> list[DeadLetter]:
    """Up to ``limit`` messages of a queue, left in place."""
    with blocking_channel(broker, "cli") as channel:
        return [letter for _tag, letter, _props in _take(channel, queue, limit)]


def replay(
    broker: BrokerConfig,
    route: str,
    ids: set[str] | None,
    *,
    dry_run: bool = False,
    limit: int = 100_000,
) -> list[str]:
    """Send dead letters back to the route queue (all when ``ids`` is None).

    The envelope id is kept (so idempotency still applies), failure headers are dropped so the
    message gets a fresh set of retries, and the replay count is incremented.
    """
    replayed: list[str] = []
    with blocking_channel(broker, "cli") as channel:
        channel.confirm_delivery()
        for tag, letter, props in _take(channel, dlq_name(route), limit):
            if ids is not None and letter.message_id not in ids:
                continue
            replayed.append(letter.message_id or "")
            if dry_run:
                continue
            new_headers = h.without_failure(letter.headers)
            new_headers[h.REPLAYS] = int(letter.headers.get(h.REPLAYS, 0) or 0) + 1
            properties = to_pika(with_headers(props, new_headers))
            channel.basic_publish("", queue_name(route), letter.body, properties, mandatory=True)
            channel.basic_ack(tag)
    return replayed


def purge(broker: BrokerConfig, route: str) -> int:
    """Delete every dead letter of a route; returns how many there were."""
    with blocking_channel(broker, "cli") as channel:
        return int(channel.queue_purge(dlq_name(route)).method.message_count)

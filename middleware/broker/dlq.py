"""Dead letters as a product: list, show, replay and purge a route's DLQ, and peek any queue;
a route's queue counts with the age of its oldest dead letter (``status``, the monitor); and
``migrate``, which turns a quorum DLQ of an earlier release into the classic one declared now.

All operations use their own short blocking connection and work while the daemon runs. Browsing
takes messages with basic.get and lets the channel close without acking, so the broker puts them
back: nothing is removed unless an operation says so (replay acks what it republished, after the
broker confirmed the republish). The DLQ is a classic queue (see ``topology.DLQ_ARGUMENTS``), so
a message put back keeps its place and no delivery is counted: a dead letter looks the same
after any number of reads.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from middleware import headers as h
from middleware.broker.factory import (
    BlockingChannel,
    blocking_channel,
    declare_durable,
    get_message,
    publish_message,
    purge_queue,
    queue_depth,
)
from middleware.broker.properties import Properties, with_headers
from middleware.broker.topology import DLQ_ARGUMENTS, dlq_name, queue_name, retry_name
from middleware.config.models import BrokerConfig, Config, RouteConfig

__all__ = [
    "DeadLetter",
    "Queues",
    "Replayed",
    "browse",
    "drop",
    "migrate",
    "purge",
    "replay",
    "route_counts",
]

AGE_SCAN = 1000
"""Dead letters read to find the oldest failure; past that, the age is a lower bound."""


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
    first_failed_at: datetime | None = None
    """When the message first failed (kept across retries and replays)."""

    def age_seconds(self, now: datetime | None = None) -> float | None:
        if self.failed_at is None:
            return None
        return ((now or datetime.now(UTC)) - self.failed_at).total_seconds()

    def failing_since(self) -> datetime | None:
        """The first failure, else the last one: how long this record has been out of sync."""
        return self.first_failed_at or self.failed_at


def _parse(props: Properties, body: bytes) -> DeadLetter:
    headers = dict(props.headers)
    subject = None
    try:
        event = orjson.loads(body)
        subject = event.get("subject") if isinstance(event, dict) else None
    except orjson.JSONDecodeError:
        pass
    reason = str(headers.get(h.REASON) or headers.get("x-first-death-reason") or "unknown")
    failed_at = _time(headers.get(h.LAST_FAILURE))
    if failed_at is None and props.timestamp:
        failed_at = datetime.fromtimestamp(props.timestamp, UTC)
    return DeadLetter(props.message_id, props.type, subject, reason,
                      int(headers.get(h.ATTEMPTS, 0) or 0), failed_at, headers, body,
                      _time(headers.get(h.FIRST_FAILURE)))


def _time(value: object) -> datetime | None:
    """An ISO time header; None when absent or not a time (a hand-made message)."""
    if not value:
        return None
    try:
        return datetime.fromisoformat(str(value))
    except ValueError:
        return None


def _take(channel: BlockingChannel, queue: str,
          limit: int) -> Iterator[tuple[int, DeadLetter, Properties]]:
    for _ in range(limit):
        got = get_message(channel, queue)
        if got is None:
            return
        yield got.tag, _parse(got.properties, got.body), got.properties


@dataclass(frozen=True)
class Queues:
    """A route's queues as the broker sees them; None where a queue does not exist."""

    ready: int | None
    retry: int | None
    dlq: int | None
    dlq_age: float | None
    """Seconds since the oldest failure among the dead letters (the first ``AGE_SCAN``); None
    without dead letters or without times on them."""


def route_counts(channel: BlockingChannel, config: Config, route: RouteConfig) -> Queues:
    """Depths of the route queue, its retry tiers together and its DLQ, and the DLQ's age.

    The age is the oldest failure, not the head's: a replayed message that failed again has its
    original first failure but sits behind younger ones. The dead letters are read on a channel
    of their own, closed at once, so they are back before other readers (a replay) look.
    """
    name = route.name
    tiers = range(1, len(config.retry_for(route).delays()) + 1)
    retries = [queue_depth(channel, retry_name(name, n)) for n in tiers]
    dlq = queue_depth(channel, dlq_name(name))
    age = None
    if dlq:
        scan = channel.connection.channel()
        try:
            times = [t for _tag, letter, _props in _take(scan, dlq_name(name), AGE_SCAN)
                     if (t := letter.failing_since()) is not None]
        finally:
            scan.close()
        if times:
            age = (datetime.now(UTC) - min(times)).total_seconds()
    return Queues(queue_depth(channel, queue_name(name)),
                  None if None in retries else sum(r or 0 for r in retries), dlq, age)


def browse(broker: BrokerConfig, queue: str, limit: int = 1000) -> list[DeadLetter]:
    """Up to ``limit`` messages of a queue, left in place."""
    with blocking_channel(broker, "cli") as channel:
        return [letter for _tag, letter, _props in _take(channel, queue, limit)]


@dataclass(frozen=True)
class Replayed:
    """What a replay sent back (or would, on a dry run) and what it refused."""

    ids: list[str]
    accepted: list[str]
    """Letters the target already accepted (only storing its answer failed): never replayed,
    since the delivery stands; fix the link, then ``drop`` them."""


def replay(
    broker: BrokerConfig,
    route: str,
    ids: set[str] | None,
    *,
    dry_run: bool = False,
    limit: int = 100_000,
) -> Replayed:
    """Send dead letters back to the route queue (all when ``ids`` is None).

    The envelope id is kept (so idempotency still applies), failure headers are dropped so the
    message gets a fresh set of retries, except the first-failure time (how long the record
    has been out of sync does not restart with a replay), and the replay count is incremented.
    A letter marked as accepted by the target stays where it is (``Replayed.accepted``).
    """
    replayed: list[str] = []
    refused: list[str] = []
    with blocking_channel(broker, "cli") as channel:
        channel.confirm_delivery()
        # Only the letters there now: one that fails again while we scan comes back at the tail
        # and must not be replayed a second time in the same call.
        present = min(limit, queue_depth(channel, dlq_name(route)) or 0)
        for tag, letter, props in _take(channel, dlq_name(route), present):
            if ids is not None and letter.message_id not in ids:
                continue
            if letter.headers.get(h.ACCEPTED) == "true":
                refused.append(letter.message_id or "")
                continue
            replayed.append(letter.message_id or "")
            if dry_run:
                continue
            new_headers = h.without_failure(letter.headers)
            if h.FIRST_FAILURE in letter.headers:
                new_headers[h.FIRST_FAILURE] = letter.headers[h.FIRST_FAILURE]
            new_headers[h.REPLAYS] = int(letter.headers.get(h.REPLAYS, 0) or 0) + 1
            publish_message(channel, "", queue_name(route), letter.body,
                            with_headers(props, new_headers))
            channel.basic_ack(tag)
    return Replayed(replayed, refused)


def drop(broker: BrokerConfig, route: str, ids: set[str]) -> list[str]:
    """Delete the named dead letters of a route (parked captures the operator resolved)."""
    dropped: list[str] = []
    with blocking_channel(broker, "cli") as channel:
        present = queue_depth(channel, dlq_name(route)) or 0
        for tag, letter, _props in _take(channel, dlq_name(route), present):
            if letter.message_id in ids:
                channel.basic_ack(tag)
                dropped.append(letter.message_id or "")
    return dropped


def purge(broker: BrokerConfig, route: str) -> int:
    """Delete every dead letter of a route; returns how many there were."""
    with blocking_channel(broker, "cli") as channel:
        return purge_queue(channel, dlq_name(route))


def migrate(broker: BrokerConfig, route: str) -> int | None:
    """Make a route's DLQ the classic queue this release declares; returns the dead letters
    moved, or None when the DLQ already was one (nothing to do).

    RabbitMQ cannot change a queue's type, so the dead letters move to ``<dlq>.migrating``
    (publish confirmed, then acked), the old queue is deleted and declared anew, and they move
    back. Stopped halfway, a second run finishes the job: the side queue is emptied into the
    DLQ whenever it exists. ``x-delivery-count`` is dropped: it counted reads, not deliveries.
    Stop the workers first: a letter dead-lettered in the instant between the last move and
    the delete would go with the old queue (quorum queues have no delete-if-empty).
    """
    dlq, side = dlq_name(route), f"{dlq_name(route)}.migrating"
    moved: int | None = None
    with blocking_channel(broker, "cli") as channel:
        channel.confirm_delivery()
        if not declare_durable(channel, dlq, DLQ_ARGUMENTS):
            channel.queue_declare(side, durable=True, arguments=DLQ_ARGUMENTS)
            while _move(channel, dlq, side) or queue_depth(channel, dlq):
                pass  # quorum queues refuse an if-empty delete: empty it right before deleting
            channel.queue_delete(dlq)
        # A fresh channel: one that used the quorum queue keeps state for the name, and
        # RabbitMQ 3.10 fails the channel when the name then turns out to be a classic queue.
        back = channel.connection.channel()
        try:
            back.confirm_delivery()
            back.queue_declare(dlq, durable=True, arguments=DLQ_ARGUMENTS)
            if queue_depth(back, side) is not None:
                moved = _move(back, side, dlq)
                back.queue_delete(side, if_empty=True)
        finally:
            if back.is_open:
                back.close()
    return moved


def _move(channel: BlockingChannel, source: str, sink: str) -> int:
    """Every message of ``source`` to ``sink``, each acked after its copy was confirmed."""
    count = 0
    while True:
        got = get_message(channel, source)
        if got is None:
            return count
        headers = {k: v for k, v in got.properties.headers.items() if k != "x-delivery-count"}
        publish_message(channel, "", sink, got.body, with_headers(got.properties, headers))
        channel.basic_ack(got.tag)
        count += 1

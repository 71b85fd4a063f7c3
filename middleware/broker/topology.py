"""Every exchange, queue and argument name derived in one pure place.

Nothing here talks to the broker; ``rabbitmq.py`` declares what these functions describe, and the
CLI, DLQ tools, metrics and tests use the same names. RabbitMQ 3.10 has no default delivery limit
and 4.x has one (20) for quorum queues, so every argument is set explicitly; supported versions
are 3.10 to 4.x.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from middleware.config.models import Config, RouteConfig

__all__ = [
    "DLQ_ARGUMENTS",
    "EVENTS_EXCHANGE",
    "UNROUTED",
    "ExchangeSpec",
    "QueueSpec",
    "Topology",
    "dlq_name",
    "hold_name",
    "queue_name",
    "retry_name",
    "route_queues",
    "topology_for",
]

EVENTS_EXCHANGE = "silobridge.events"
UNROUTED = "silobridge.unrouted"


def queue_name(route: str) -> str:
    return f"silobridge.route.{route}"


def retry_name(route: str, tier: int) -> str:
    return f"{queue_name(route)}.retry.{tier}"


def dlq_name(route: str) -> str:
    return f"{queue_name(route)}.dlq"


def hold_name(route: str) -> str:
    """Where an ordered route parks an event whose subject another event holds (two-way.md)."""
    return f"{queue_name(route)}.hold"


@dataclass(frozen=True)
class QueueSpec:
    name: str
    arguments: dict[str, Any]
    bindings: tuple[tuple[str, str], ...] = ()  # (exchange, routing key pattern)


@dataclass(frozen=True)
class ExchangeSpec:
    name: str
    type: str = "topic"
    arguments: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Topology:
    """What one config needs declared: exchanges, then queues with their bindings."""

    exchanges: list[ExchangeSpec] = field(default_factory=list)
    queues: list[QueueSpec] = field(default_factory=list)


def route_queues(route: RouteConfig, config: Config) -> list[QueueSpec]:
    """The route queue, one delay queue per retry tier (and the hold queue of an ordered
    route), and the DLQ."""
    policy = config.retry_for(route)
    main = QueueSpec(
        queue_name(route.name),
        {
            "x-queue-type": "quorum",
            "x-delivery-limit": policy.delivery_limit,
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": dlq_name(route.name),
            "x-dead-letter-strategy": "at-least-once",
            "x-overflow": "reject-publish",
        },
        tuple((EVENTS_EXCHANGE, pattern) for pattern in route.bind),
    )
    tiers = [
        QueueSpec(retry_name(route.name, n), _delay_arguments(route.name, delay))
        for n, delay in enumerate(policy.delays(), start=1)
    ]
    dlq = QueueSpec(dlq_name(route.name), DLQ_ARGUMENTS)
    if route.sync is not None and route.sync.ordering == "subject":
        tiers.append(QueueSpec(hold_name(route.name),
                               _delay_arguments(route.name, route.sync.hold_delay)))
    return [main, *tiers, dlq]


def _delay_arguments(route: str, delay: float) -> dict[str, Any]:
    """A delay queue: messages wait ``delay`` seconds, then dead-letter back to the route."""
    return {
        "x-queue-type": "quorum",
        "x-message-ttl": int(delay * 1000),
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": queue_name(route),
        "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish",
    }


DLQ_ARGUMENTS: dict[str, Any] = {"x-queue-type": "classic"}
"""A dead-letter queue is a classic queue, so reading it changes nothing.

Operators browse dead letters by basic.get and letting the channel close without an ack. A
quorum queue counts every such return as a delivery (``x-delivery-count``), and RabbitMQ 4.x
gives quorum queues a default delivery limit of 20, past which a message is dropped: a dead
letter looked at twenty times would be lost. A classic queue keeps no delivery count and has no
delivery limit on 3.10, 3.13 and 4.x, and returns a message to its place, so the head stays the
head. The type is explicit because a 4.x vhost may default to quorum. The price: a classic
queue is not replicated (its node must be up to read it); ``silobridge dlq migrate`` turns a
quorum DLQ of an earlier release into this one.
"""


def topology_for(config: Config) -> Topology:
    """Everything the config's routes need.

    Events no route is bound for go to the alternate exchange and wait in ``silobridge.unrouted``
    instead of being dropped, so adding a route later can still pick them up by a shovel/replay.
    """
    exchanges = [
        ExchangeSpec(UNROUTED, "fanout"),
        ExchangeSpec(EVENTS_EXCHANGE, "topic", {"alternate-exchange": UNROUTED}),
    ]
    unrouted = QueueSpec(UNROUTED, {"x-queue-type": "quorum"}, ((UNROUTED, ""),))
    queues = [spec for route in config.routes for spec in route_queues(route, config)]
    return Topology(exchanges, [unrouted, *queues])

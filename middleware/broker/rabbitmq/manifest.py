"""Which routes this broker holds queues for: a manifest kept in the broker itself.

AMQP cannot list queues (only the management plugin can, and it is often off), yet an operator
who removes a route from the config must be able to find its queues: they stay bound to the
events exchange and keep filling forever. So every topology declaration also records its route
names, with their retry-tier counts, in a one-message queue; ``topology diff`` compares that
record with the config and ``topology prune`` deletes what the config no longer has.

The queue keeps only its newest message (``x-max-length`` 1, ``drop-head``), so writing the
manifest replaces it. Two processes declaring at the same moment may each write what they read
before the other's write; both write the same routes when they run the same config, which is
the case this serves.
"""

from __future__ import annotations

import orjson
import pika
from pika.adapters.blocking_connection import BlockingChannel

from middleware.broker.topology import Topology, queue_name

__all__ = ["MANIFEST_QUEUE", "declared_routes", "read_manifest", "write_manifest"]

MANIFEST_QUEUE = "silobridge.manifest"
_ARGUMENTS = {"x-max-length": 1, "x-overflow": "drop-head"}
_ROUTE_PREFIX = queue_name("")


def declared_routes(topology: Topology) -> dict[str, int]:
    """Route name -> number of retry tiers, from the queue names of a topology."""
    routes: dict[str, int] = {}
    for queue in topology.queues:
        if not queue.name.startswith(_ROUTE_PREFIX):
            continue
        name, *rest = queue.name[len(_ROUTE_PREFIX):].split(".")
        routes.setdefault(name, 0)
        if len(rest) == 2 and rest[0] == "retry":
            routes[name] = max(routes[name], int(rest[1]))
    return routes


def read_manifest(channel: BlockingChannel) -> dict[str, int]:
    """The recorded routes (empty when nothing was recorded yet); the record stays."""
    channel.queue_declare(MANIFEST_QUEUE, durable=True, arguments=_ARGUMENTS)
    method, _properties, body = channel.basic_get(MANIFEST_QUEUE, auto_ack=False)
    if method is None:
        return {}
    channel.basic_nack(method.delivery_tag, requeue=True)
    try:
        routes = orjson.loads(body)["routes"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return {}  # not ours or damaged: the next declaration writes a fresh one
    return {str(name): int(tiers) for name, tiers in routes.items()}


def write_manifest(channel: BlockingChannel, routes: dict[str, int]) -> None:
    """Replace the record (persistent; confirmed when the channel is in confirm mode)."""
    channel.queue_declare(MANIFEST_QUEUE, durable=True, arguments=_ARGUMENTS)
    channel.basic_publish("", MANIFEST_QUEUE, orjson.dumps({"routes": routes}),
                          pika.BasicProperties(delivery_mode=2,
                                               content_type="application/json"))

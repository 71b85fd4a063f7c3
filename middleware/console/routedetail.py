"""One route as the route detail page shows it: its live state, each retry tier's depth, its
most recent failures and the mapping in use.

Retry tiers are counted one by one (the overview sums them), because the depth per tier tells
how far a backlog is from giving up: messages in the last tier are one failure away from the
dead-letter queue. A broker that cannot be reached leaves the broker's parts empty (None) and
the rest of the page still answers, since the page is where an operator looks during an outage.
Blocking (broker connection, mapping file): call on a worker thread.
"""

from __future__ import annotations

from typing import Any

from middleware.broker.factory import blocking_channel, queue_depth
from middleware.broker.topology import retry_name
from middleware.config.models import Config, RouteConfig
from middleware.console import deadletters as letters
from middleware.console.studio import Studio
from middleware.errors import BrokerUnavailable

__all__ = ["RECENT", "mapping_in_use", "recent_failures", "retry_tiers"]

RECENT = 20
"""Failures the page lists; the errors page has all of them."""


def retry_tiers(config: Config, route: RouteConfig) -> dict[str, Any]:
    """The retry policy with the depth of each tier's delay queue (None: unknown)."""
    policy = config.retry_for(route)
    delays = policy.delays()
    depths: list[int | None] = [None] * len(delays)
    try:
        with blocking_channel(config.broker, "console") as channel:
            depths = [queue_depth(channel, retry_name(route.name, n))
                      for n in range(1, len(delays) + 1)]
    except BrokerUnavailable:
        pass
    return {"delivery_limit": policy.delivery_limit,
            "tiers": [{"tier": n, "delay_seconds": delay, "depth": depth,
                       "queue": retry_name(route.name, n)}
                      for n, (delay, depth) in enumerate(zip(delays, depths, strict=True), 1)]}


def recent_failures(config: Config, route: str) -> list[dict[str, Any]] | None:
    """The route's newest dead letters as summaries (no bodies); None without a broker."""
    try:
        return letters.recent_errors(config.broker, [route], RECENT)
    except BrokerUnavailable:
        return None


def mapping_in_use(studio: Studio, route: RouteConfig, rules: bool) -> dict[str, Any] | None:
    """The mapping file, and its field rules for roles that may read mappings."""
    if studio.path(route.name) is None:
        return None
    found: dict[str, Any] = {"file": route.mapping}
    if rules:
        read = studio.read(route.name)
        found.update({"rules": read["fields"], "problems": read["problems"]})
    return found
